"""The static leaderboard site: results/ (+ results/reported/) -> HTML pages under site/_build/.

Measured numbers come only from result files; numbers reported in papers come only from
results/reported/ and are shown in their own, labelled tables, never mixed into a measured one.
Every page is rendered by Jinja2 with autoescaping (a model name is text, never markup), links
are relative (the site opens from disk), nothing is loaded from the network, and iteration is
sorted everywhere, so the same results give the same bytes.

Extension point: append to EXTRA_PAGES a callable (env, results_dir, out_dir) -> [(nav label,
relative href)]; it is called during the build (after the static assets are copied, before the
core pages are rendered) and its entries are added to the navigation of every page. When any
extra page exists, every callable is called a second time with the complete navigation in
env.globals["nav"], so it must be idempotent (rewrite the same files). Its templates should
extend "base.html" (block `content`; variables `root` ("" for top-level pages) and `title`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from benchmark.comparison.compare import (
    ResultTable,
    default_tasks,
    load_table,
    summarize,
    task_kind,
)
from benchmark.core.paths import site_dir
from benchmark.results.schema import Result
from benchmark.site.options import BuildReport, SiteError, SiteOptions
from benchmark.site.output import copy_static, prepare_out
from benchmark.site.plots import size_plot, task_plot
from benchmark.site.queries import per_query_data, per_query_rows
from benchmark.site.reported import reported_numbers, reported_tables
from benchmark.site.templating import jinja_environment
from benchmark.site.timing import hardware_label, hardware_summary, throughput, timing_flags
from benchmark.site.views import FAMILY_ORDER, family_class, metric_order, task_views

log = logging.getLogger(__name__)

ExtraPage = Callable[[jinja2.Environment, Path, Path], list[tuple[str, str]]]
EXTRA_PAGES: list[ExtraPage] = []


def _study_pages(env: jinja2.Environment, results_dir: Path, out_dir: Path) -> list[tuple[str, str]]:
    """`maebench study` reports (results/studies/*.json) -> one page per study."""
    from benchmark.site.study_pages import study_pages

    return study_pages(env, results_dir, out_dir)


EXTRA_PAGES.append(_study_pages)


def _benchmark_pages(env: jinja2.Environment, results_dir: Path, out_dir: Path) -> list[tuple[str, str]]:
    """Declared benchmarks (benchmark/site/benchmark_pages.py): one page each, ranked on full coverage."""
    from benchmark.site.benchmark_pages import site_pages

    return site_pages(env, results_dir, out_dir)


EXTRA_PAGES.append(_benchmark_pages)

CORE_NAV = (
    ("Leaderboard", "index.html"),
    ("Tasks", "tasks.html"),
    ("Models", "models.html"),
    ("Reported", "reported.html"),
    ("Method", "method.html"),
)


def _load_cards(models_dir: Path | None) -> dict[str, Any]:
    from benchmark.catalog.registry import load_cards
    from benchmark.core.paths import models_dir as default_models_dir

    folder = models_dir or default_models_dir()
    if not folder.is_dir():
        return {}
    cards, errors = load_cards(folder)  # a broken card must not stop the site
    for message in errors:
        log.warning("card left out of the site: %s", message)
    return cards


def _catalog_rows(table: ResultTable) -> list[dict]:
    """Every catalog task (CQADupStack forums folded into their mean), with its results."""
    from benchmark.catalog.tasks import all_tasks

    return [{"spec": spec, "n_results": len(table.get(spec.name, {}))}
            for spec in all_tasks() if spec.part_of is None]


def _model_rows(cards: dict[str, Any], results_by_model: dict[str, list[Result]]) -> list[dict]:
    """Every card and every model with results (a submitted result may lack a card here)."""
    rows = []
    for name in sorted(set(cards) | set(results_by_model)):
        card, results = cards.get(name), results_by_model.get(name, [])
        info = results[0].model if results else _card_info(card)
        rows.append({"name": name, "info": info, "card": card, "results": results})
    return rows


def _card_info(card: Any):
    """A card as the ModelInfo a result would record (for models without results)."""
    from benchmark.results.schema import ModelInfo

    return ModelInfo.from_card(card)


def build_site(options: SiteOptions) -> BuildReport:
    timings: dict[str, float] = {}
    cpu_timings: dict[str, float] = {}
    clock, cpu_clock = time.perf_counter(), time.process_time()

    def lap(name: str) -> None:
        nonlocal clock, cpu_clock
        now, cpu_now = time.perf_counter(), time.process_time()
        timings[name] = round(now - clock, 3)
        cpu_timings[name] = round(cpu_now - cpu_clock, 3)
        clock, cpu_clock = now, cpu_now

    templates = options.templates_dir or site_dir() / "templates"
    static = options.static_dir or site_dir() / "static"
    if not (templates / "base.html").is_file():
        raise SiteError(f"templates not found in {templates} (base.html missing)")
    metric = options.stats.metric
    table = load_table(options.results_dir)
    cards = _load_cards(options.models_dir)
    reported = reported_numbers(options.results_dir)
    tasks = default_tasks(table)
    # tasks outside the leaderboard's means (the embedded smoke test next to benchmark tasks)
    # still get their own page: a demo's or a researcher's first results must be visible
    side = sorted(t for t in table if t not in tasks and task_kind(t) != "subtask")
    left_out = sorted(t for t in table if t not in tasks and t not in side)
    lap("load")

    all_views, filtered = task_views(table, tasks + side, options, reported)
    views = [v for v in all_views if v.name in tasks]
    side_views = [v for v in all_views if v.name in side]
    tasks = [v.name for v in views]
    summary = summarize(filtered, tasks, None, {v.name: v.scores for v in views}, options.stats)
    lap("stats")

    flags = timing_flags([r for t in table.values() for r in t.values()], cards)
    for view in all_views:
        view.plot = task_plot(view, metric, flags)
    params_plot = size_plot(summary, cards, metric, options.baseline)
    n_sized = params_plot.count("<circle")
    if n_sized < 2:  # one point (or a reference line alone) says nothing about size
        params_plot = Markup("")
    lap("plots")

    prepare_out(options.out_dir)
    copy_static(static, options.out_dir)
    env = jinja_environment(templates)
    nav = [{"label": label, "href": href} for label, href in CORE_NAV]
    env.globals["nav"] = nav
    env.globals["cards"] = cards  # extra pages mark results whose config differs from the card
    extra_nav = []
    for extra in EXTRA_PAGES:
        extra_nav += [{"label": label, "href": href}
                      for label, href in extra(env, options.results_dir, options.out_dir)]
    nav.extend(extra_nav)
    if extra_nav:  # once more, so that extra pages link to each other too (same files rewritten)
        for extra in EXTRA_PAGES:
            extra(env, options.results_dir, options.out_dir)

    results_by_model: dict[str, list[Result]] = {}
    for t in sorted(table):
        for name, r in table[t].items():
            results_by_model.setdefault(name, []).append(r)
    all_results = [r for rs in results_by_model.values() for r in rs]
    created = sorted(r.provenance.created_at for r in all_results)
    families = sorted({family_class(r.model.family) for r in all_results},
                      key=lambda f: (FAMILY_ORDER + ("other",)).index(f))
    baseline_present = any(options.baseline in v.cells for v in views)
    common = {
        "metric": metric,
        "alpha": options.stats.alpha,
        "baseline": options.baseline,
        "baseline_present": baseline_present,
        "baseline_display": next((r.model.display_name for r in results_by_model.get(
            options.baseline, [])), options.baseline),
        "stats": options.stats,
        "top_n": options.top_n,
        "n_results": len(all_results),
        "created_range": (created[0], created[-1]) if created else None,
    }
    view_by_task = {v.name: v for v in all_views}
    common["config_differs"] = _config_differs(cards, results_by_model)
    common["approximate"] = _approximate_searches(all_results)
    common["model_pages"] = sorted(set(results_by_model) | set(cards))
    common["task_pages"] = sorted(view_by_task)
    common["metric_order"] = metric_order
    common["timing_flags"] = flags
    common["hardware_summary"] = hardware_summary
    pages: dict[str, str] = {}
    pages["index.html"] = env.get_template("index.html").render(
        root="", title="Leaderboard", summary=summary, views=views, families=families,
        left_out=left_out, side_views=side_views, params_plot=params_plot,
        n_reported=len(reported), n_sized=n_sized,
        n_incomplete=sum(not s.complete for s in summary), **common)
    pages["tasks.html"] = env.get_template("tasks.html").render(
        root="", title="Tasks", views=views, side_views=side_views, left_out=left_out,
        table=table, catalog=_catalog_rows(table), **common)
    pages["models.html"] = env.get_template("models.html").render(
        root="", title="Models", summary=summary, results_by_model=results_by_model,
        cards=cards, model_rows=_model_rows(cards, results_by_model), **common)
    pages["reported.html"] = env.get_template("reported.html").render(
        root="", title="Reported numbers", reported=reported,
        **reported_tables(reported, table, metric), **common)
    pages["method.html"] = env.get_template("method.html").render(
        root="", title="Method", **common)
    task_tpl = env.get_template("task.html")
    query_tpl = env.get_template("queries.html")
    for view in all_views:
        pages[f"tasks/{view.name}.html"] = task_tpl.render(
            root="../", title=view.display_name, view=view,
            on_board=view.name in tasks, **common)
        if view.query_pair is not None:
            data = per_query_data(view, options)
            pages[f"queries/{view.name}.html"] = query_tpl.render(
                root="../", title=f"{view.display_name}: per query", view=view,
                data=data, rows=per_query_rows(view, data), **common)
    model_tpl = env.get_template("model.html")
    for name in sorted(set(results_by_model) | set(cards)):
        results = results_by_model.get(name, [])
        entry = next((s for s in summary if s.name == name), None)
        card = cards.get(name)
        info = results[0].model if results else _card_info(card)
        pages[f"models/{name}.html"] = model_tpl.render(
            root="../", title=info.display_name, name=name, results=results,
            info=info, card=card, summary_entry=entry,
            card_json=_card_dict(cards.get(name)), view_by_task=view_by_task,
            reported=[r for r in reported if r.cell.model == name],
            throughput=throughput, hardware_label=hardware_label, task_kind=task_kind,
            **common)
    for rel, html in sorted(pages.items()):
        path = options.out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(html, encoding="utf-8")
    lap("render")
    return BuildReport(options.out_dir, sorted(pages), timings, len(all_results), cpu_timings)


def _config_differs(cards: dict[str, Any], results_by_model: dict[str, list[Result]]
                    ) -> dict[str, list[str]]:
    """Per model, the tasks whose stored result was computed with another configuration than its
    current card (a hand-edited card must not pass its new name off on old numbers). Models
    without a card (card-free runs, submissions) are not marked: there is nothing to differ from."""
    from benchmark.comparison.standings import config_differs

    marked: dict[str, list[str]] = {}
    for name, results in results_by_model.items():
        card = cards.get(name)
        if card is None:
            continue
        tasks = sorted(r.task.name for r in results if config_differs(r, card))
        if tasks:
            marked[name] = tasks
    return marked


def _approximate_searches(results: list[Result]) -> dict[str, dict[str, str]]:
    """model -> task -> label, for results searched with an ANN index: they sit in the same
    tables as exact ones, so every score of theirs carries the label and its measured recall."""
    marked: dict[str, dict[str, str]] = {}
    for r in results:
        search = (r.provenance.runtime or {}).get("search") or {}
        if search.get("kind") != "approximate":
            continue
        recall = next((f"{k} {v}" for k, v in search.items() if k.startswith("recall@")), "")
        label = f"approximate search ({search.get('method', 'ANN')}){'; ' + recall if recall else ''}"
        marked.setdefault(r.model.name, {})[r.task.name] = label
    return marked


def _card_dict(card: Any) -> dict | None:
    if card is None:
        return None
    data = card.model_dump(mode="json", exclude_none=True)
    return json.loads(json.dumps(data, sort_keys=True))

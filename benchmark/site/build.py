"""The static leaderboard site: results/ (+ results/reported/) -> HTML pages under site/_build/.

build_site loads the results, cards and reported numbers once, computes every task's comparison
family and the plots, and renders the leaderboard's own pages (Leaderboard, Tasks, Models,
Reported, Method; one page per task, per-query view and model) with the pages listed in
benchmark.site.pages, each once, with one navigation; then it writes them all.

Measured numbers come only from result files; numbers reported in papers come only from
results/reported/ and are shown in their own, labelled tables, never mixed into a measured one.
Every page is rendered by Jinja2 with autoescaping (a model name is text, never markup), links
are relative (the site opens from disk), nothing is loaded from the network, and iteration is
sorted everywhere, so the same results give the same bytes.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
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
from benchmark.site.benchmark_pages import benchmark_pages
from benchmark.site.options import BuildReport, SiteError, SiteOptions
from benchmark.site.output import copy_static, prepare_out, write_files
from benchmark.site.pages import PageBuilder, Pages, render_pages, with_plugins
from benchmark.site.plots import size_plot, task_plot
from benchmark.site.queries import per_query_data, per_query_rows
from benchmark.site.reported import reported_numbers, reported_tables
from benchmark.site.reproduction_page import reproduction_page
from benchmark.site.study_pages import study_pages
from benchmark.site.templating import jinja_environment
from benchmark.site.timing import hardware_label, hardware_summary, throughput, timing_flags
from benchmark.site.views import FAMILY_ORDER, TaskView, family_class, metric_order, task_views

log = logging.getLogger(__name__)

CORE_NAV = (
    ("Leaderboard", "index.html"),
    ("Tasks", "tasks.html"),
    ("Models", "models.html"),
    ("Reported", "reported.html"),
    ("Method", "method.html"),
)

# The site's pages after the leaderboard's own (CORE_NAV), in navigation order: every build has
# them, from Python as from `maebench site`. Plug-ins append to pages.PLUGIN_PAGES instead.
SITE_PAGES: tuple[PageBuilder, ...] = (study_pages, benchmark_pages, reproduction_page)


def _load_cards(models_dir: Path | None) -> dict[str, Any]:
    """The model cards by name ({} without a models folder), for sizes and config marks."""
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


@dataclass
class _Board:
    """What the leaderboard's own pages show, loaded and computed once per build."""

    table: ResultTable
    cards: dict[str, Any]
    reported: list[Any]
    tasks: list[str]  # the tasks of the leaderboard's means
    left_out: list[str]  # tasks with results but no page of their own (CQADupStack's forums)
    all_views: list[TaskView]
    views: list[TaskView]  # the leaderboard's tasks
    side_views: list[TaskView]  # tasks outside the means, with a page of their own
    summary: list[Any]
    flags: dict[tuple[str, str], str]  # (model, task) -> why its speed is implausible
    params_plot: Markup
    n_sized: int  # models on the size plot


class _Laps:
    """Wall and CPU seconds per build phase, for BuildReport."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self._clock, self._cpu_clock = time.perf_counter(), time.process_time()

    def __call__(self, name: str) -> None:
        now, cpu_now = time.perf_counter(), time.process_time()
        self.wall[name] = round(now - self._clock, 3)
        self.cpu[name] = round(cpu_now - self._cpu_clock, 3)
        self._clock, self._cpu_clock = now, cpu_now


def build_site(options: SiteOptions) -> BuildReport:
    """Build the whole site into options.out_dir (replacing a previous build, never another
    folder): the leaderboard's own pages, then SITE_PAGES and the plug-ins' pages; the same
    from Python as from `maebench site`."""
    lap = _Laps()
    templates = options.templates_dir or site_dir() / "templates"
    static = options.static_dir or site_dir() / "static"
    if not (templates / "base.html").is_file():
        raise SiteError(f"templates not found in {templates} (base.html missing)")
    board = _board(options, lap)

    prepare_out(options.out_dir)
    copy_static(static, options.out_dir)
    env = jinja_environment(templates)
    env.globals["cards"] = board.cards  # other pages mark results whose config differs from the card
    sections = [_leaderboard_pages(board, options),
                *(builder(options.results_dir) for builder in with_plugins(SITE_PAGES))]
    files = render_pages(sections, env)
    write_files(files, options.out_dir)
    lap("render")
    n_results = sum(len(results) for results in board.table.values())
    return BuildReport(options.out_dir, sorted(files), lap.wall, n_results, lap.cpu)


def _board(options: SiteOptions, lap: _Laps) -> _Board:
    """Load (results, cards, reported numbers), statistics (one comparison family per task, the
    summary) and plots: the three timed phases before rendering."""
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
    return _Board(table, cards, reported, tasks, left_out, all_views, views, side_views, summary,
                  flags, params_plot, n_sized)


def _leaderboard_pages(board: _Board, options: SiteOptions) -> Pages:
    """The leaderboard's own pages: first in the navigation, rendered like every other."""

    def render(env: jinja2.Environment) -> dict[str, str]:
        return _render_leaderboard(env, board, options)

    return Pages(nav=CORE_NAV, render=render)


def _render_leaderboard(env: jinja2.Environment, board: _Board, options: SiteOptions
                        ) -> dict[str, str]:
    metric = options.stats.metric
    table, cards, reported, summary = board.table, board.cards, board.reported, board.summary
    views, side_views, all_views = board.views, board.side_views, board.all_views
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
    common["timing_flags"] = board.flags
    common["hardware_summary"] = hardware_summary
    pages: dict[str, str] = {}
    pages["index.html"] = env.get_template("index.html").render(
        root="", title="Leaderboard", summary=summary, views=views, families=families,
        left_out=board.left_out, side_views=side_views, params_plot=board.params_plot,
        n_reported=len(reported), n_sized=board.n_sized,
        n_incomplete=sum(not s.complete for s in summary), **common)
    pages["tasks.html"] = env.get_template("tasks.html").render(
        root="", title="Tasks", views=views, side_views=side_views, left_out=board.left_out,
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
            on_board=view.name in board.tasks, **common)
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
    return pages


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

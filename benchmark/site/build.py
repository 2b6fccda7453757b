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
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from benchmark.comparison.compare import (
    ResultTable,
    StatsOptions,
    all_pairs,
    comparable_groups,
    competition_ranks,
    default_tasks,
    incompatibility,
    load_table,
    ordered_by_score,
    summarize,
    task_kind,
    task_scores,
)
from benchmark.core.errors import MaebenchError
from benchmark.core.paths import site_dir
from benchmark.evaluation.metrics import STANDARD_METRICS
from benchmark.evaluation.significance import PairComparison, TaskScores, correct, permutations_for
from benchmark.results.schema import Result
from benchmark.site.svgplot import Point, RefLine, scatter

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

MARKER_FILE = ".maebench-site"
FAMILY_ORDER = ("mae", "contrastive", "sparse", "supervised")
CORE_NAV = (
    ("Leaderboard", "index.html"),
    ("Tasks", "tasks.html"),
    ("Models", "models.html"),
    ("Reported", "reported.html"),
    ("Method", "method.html"),
)


class SiteError(MaebenchError):
    """The site cannot be built (output folder, templates)."""


@dataclass
class SiteOptions:
    results_dir: Path
    out_dir: Path
    baseline: str = "bm25"
    top_n: int = 40
    stats: StatsOptions = field(default_factory=StatsOptions)
    models_dir: Path | None = None
    templates_dir: Path | None = None
    static_dir: Path | None = None
    data_dir: Path | None = None  # for query texts and judgements on the per-query pages


@dataclass
class BuildReport:
    out_dir: Path
    pages: list[str]
    timings: dict[str, float]  # wall seconds per phase
    n_results: int
    cpu_timings: dict[str, float] = field(default_factory=dict)  # CPU seconds, all threads


# --------------------------------------------------------------------------- view models


@dataclass
class Cell:
    value: float
    vs_base: PairComparison | None = None
    vs_best: PairComparison | None = None
    best: bool = False
    top_group: bool = False  # not significantly worse than the task's best (Holm)

    def base_mark(self, alpha: float) -> str:
        c = self.vs_base
        if c is None or c.p_holm is None or c.p_holm >= alpha:
            return ""
        return "up" if c.diff > 0 else "down"


@dataclass
class TaskView:
    name: str
    display_name: str
    split: str
    quirks: list[str]
    n_queries: int
    n_docs: int | None
    fingerprints: dict | None
    results: list[Result]  # the comparable group, best first
    metrics: list[str]
    scores: TaskScores
    cells: dict[str, Cell]
    matrix_names: list[str]
    matrix: list[list[dict | None]]
    matrix_limited: bool
    excluded: list[tuple[str, str]]
    plot: Markup
    reported: list[Any]
    query_pair: tuple[str, str] | None
    display: dict[str, str]  # model name -> display name
    ranks: dict[str, int] = field(default_factory=dict)  # model -> rank, ties share (1, 2, 2, 4)


def _load_reported(results_dir: Path) -> list[Any]:
    """Reported numbers (benchmark.results.reported); [] when that module or folder is absent."""
    try:
        from benchmark.results.reported import load_reported
    except ImportError:
        return []
    return sorted(
        load_reported(results_dir),
        key=lambda r: (r.cell.model, r.cell.task, r.cell.metric, r.file, r.cell.system),
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


def throughput(result: Result) -> float | None:
    """Corpus documents indexed per second (encode_corpus for dense, index for BM25); None when
    the vectors (some or all) were read from the embedding store: that time is not an encoding."""
    timings = result.provenance.timings
    seconds = timings.get("encode_corpus", timings.get("index"))
    if not seconds or not result.task.n_docs:
        return None
    store = (result.provenance.runtime or {}).get("embedding_store") or {}
    if store.get("shards_from_store"):
        return None
    return result.task.n_docs / seconds


# A dense encoding's implied compute rate (2 x parameters x max tokens x documents / second, an
# upper bound on the work) is compared with the median of the other dense results on the same
# hardware: this many times slower or faster is marked as implausible (a loaded machine, a
# broken timing), since the same machine does the same work at about the same rate.
IMPLAUSIBLE_FACTOR = 4.0


def _hardware_key(result: Result) -> tuple:
    hw = result.provenance.hardware
    return (hw.get("cpu"), hw.get("cpu_count"), hw.get("gpu"))


# The same weights, settings, backend, task and hardware do the same work: speeds this many times
# apart cannot both describe the model (3.3 and 9.6 documents/s for one checkpoint on SciFact,
# once under a training job and once on a quieter machine, used to stand side by side unmarked).
SAME_WORK_FACTOR = 2.0


def _same_work_key(result: Result) -> tuple | None:
    """What fixes a dense encoding's work: the passage weights' identity (their sha256, whatever
    the card's name), the settings that change the cost, the backend, the task and the hardware.
    None when the result records no weights identity (nothing says two cards share weights)."""
    runtime = result.provenance.runtime or {}
    weights = (runtime.get("weights_identity") or {}).get("passage")
    if not weights:
        return None
    cfg = result.model.config or {}
    return (weights, cfg.get("passage_max_length"), cfg.get("batch_size"), cfg.get("dtype"),
            runtime.get("backend", "torch"), result.task.name, _hardware_key(result))


def _same_work_flags(results: list[tuple[Result, float]]) -> dict[tuple[str, str], str]:
    """(model, task) -> why, for a speed SAME_WORK_FACTOR x off the median of the other results
    doing the same work (_same_work_key): with two, both are marked, since nothing says which
    of them ran on the loaded machine."""
    groups: dict[tuple, list[tuple[Result, float]]] = {}
    for r, speed in results:
        key = _same_work_key(r)
        if key is not None:
            groups.setdefault(key, []).append((r, speed))
    flags: dict[tuple[str, str], str] = {}
    for group in groups.values():
        for r, speed in group:
            others = sorted(s for o, s in group if o is not r)
            if not others:
                continue
            median = others[len(others) // 2]
            ratio = max(speed / median, median / speed)
            if ratio >= SAME_WORK_FACTOR:
                names = ", ".join(f"{o.model.name} {s:,.1f}" for o, s in
                                  sorted(group, key=lambda item: item[0].model.name) if o is not r)
                flags[(r.model.name, r.task.name)] = (
                    f"implausible: {speed:,.1f} docs/s, while the same weights with the same "
                    f"settings on the same task and hardware ran at {names} docs/s ({ratio:.1f}x "
                    "apart for the same work): the machine's load, not the model, set these "
                    "speeds")
    return flags


def timing_flags(results: list[Result], cards: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(model, task) -> why its indexing speed is implausible, for dense results whose implied
    FLOP rate is IMPLAUSIBLE_FACTOR x off the median of the dense results on the same hardware
    (at least three of them), whose speed is SAME_WORK_FACTOR x off another result of the same
    weights doing the same work, or read back from the embedding store."""
    measured: list[tuple[Result, float]] = []
    rates: dict[tuple, list[tuple[Result, float]]] = {}
    flags: dict[tuple[str, str], str] = {}
    for r in results:
        if r.model.kind != "dense":
            continue
        store = (r.provenance.runtime or {}).get("embedding_store") or {}
        if store.get("shards_from_store"):
            flags[(r.model.name, r.task.name)] = (
                "vectors read from the embedding store: no encoding time to show")
            continue
        speed = throughput(r)
        if speed is not None:
            measured.append((r, speed))
        card = cards.get(r.model.name)
        params = getattr(card, "parameters", None) if card else None
        length = (r.model.config or {}).get("passage_max_length")
        if speed is None or not params or not length:
            continue
        rates.setdefault(_hardware_key(r), []).append((r, 2 * params * length * speed))
    for group in rates.values():
        if len(group) < 3:
            continue
        median = sorted(rate for _, rate in group)[len(group) // 2]
        for r, rate in group:
            ratio = rate / median
            if ratio < 1 / IMPLAUSIBLE_FACTOR or ratio > IMPLAUSIBLE_FACTOR:
                flags[(r.model.name, r.task.name)] = (
                    f"implausible: {rate / 1e9:,.1f} GFLOP/s against a median of "
                    f"{median / 1e9:,.1f} for the dense results on the same hardware "
                    f"({'slower' if ratio < 1 else 'faster'} by {max(ratio, 1 / ratio):.0f}x: a "
                    "loaded machine or a broken timing)")
    for key, why in _same_work_flags(measured).items():
        flags[key] = f"{flags[key]}; {why}" if key in flags else why
    return flags


def hardware_summary(results: list[Result]) -> list[tuple[str, int]]:
    """(hardware label, number of results) for a page's caption, commonest first."""
    counts: dict[str, int] = {}
    for r in results:
        label = hardware_label(r)
        counts[label] = counts.get(label, 0) + 1
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def hardware_label(result: Result) -> str:
    hw = result.provenance.hardware
    gpu = hw.get("gpu")
    return str(gpu) if gpu else f"{hw.get('cpu', '?')} ({hw.get('cpu_count', '?')} CPUs)"


def _family_class(family: str) -> str:
    return family if family in FAMILY_ORDER else "other"


# --------------------------------------------------------------------------- statistics


def _task_views(
    table: ResultTable, tasks: list[str], options: SiteOptions, reported: list[Any]
) -> tuple[list[TaskView], ResultTable]:
    """Per task: the main comparable group and its pairwise tests, Holm/BH-corrected over one
    family per task: all pairs of its top-N models plus the baseline (what its matrix shows);
    every marker of the task comes from that family. (One family across all tasks would need
    P >= 2 m / alpha sign flips for m in the thousands: minutes, not seconds.)"""
    metric = options.stats.metric
    filtered: ResultTable = {}
    prepared = []
    for t in tasks:
        all_results = list(table[t].values())
        groups = comparable_groups(all_results, metric)
        if not groups:
            continue
        main = ordered_by_score(groups[0], metric)
        names = {r.model.name for r in main}
        excluded = [
            (r.model.name, incompatibility(main[0], r, metric) or "not comparable")
            for r in all_results if r.model.name not in names
        ]
        filtered[t] = {r.model.name: r for r in main}
        n_perm = permutations_for(len(main) - 1, options.stats.alpha, options.stats.n_perm)
        scores = task_scores(main, replace(options.stats, n_perm=n_perm))
        prepared.append((t, main, excluded, scores))

    # ONE comparison family per task, used for every marker of that task (leaderboard arrows,
    # shading, the task page's vs-baseline column and its matrix): all pairs among the task's
    # top-N models (plus the baseline). Two families would let the leaderboard call a pair
    # significant that the matrix calls not separable.
    by_base: dict[tuple[str, str], PairComparison] = {}
    by_best: dict[tuple[str, str], PairComparison] = {}
    matrices = {}
    family_names: dict[str, list[str]] = {}
    for t, main, _, scores in prepared:
        names = [r.model.name for r in main]
        best = names[0]
        family = names[: options.top_n]
        if options.baseline in names and options.baseline not in family:
            family.append(options.baseline)
        family_names[t] = family
        pairs = all_pairs(family)
        n_perm = permutations_for(len(pairs), options.stats.alpha, options.stats.n_perm)
        if n_perm > scores.n_perm or len(family) < len(names):
            scores = scores.subset(family, max(n_perm, scores.n_perm))
        matrices[t] = correct(scores.compare(pairs, ci=False))
        lookup = {(c.a, c.b): c for c in matrices[t]}
        if options.baseline in family:
            with_ci = {c.a: c for c in scores.compare(
                [(n, options.baseline) for n in family if n != options.baseline])}
            for n in family:
                if n != options.baseline:
                    c = _oriented(lookup, n, options.baseline)
                    ci = with_ci[n]
                    by_base[(t, n)] = replace(c, ci_low=ci.ci_low, ci_high=ci.ci_high)
        for n in family:
            if n != best:
                by_best[(t, n)] = _oriented(lookup, n, best)
    alpha = options.stats.alpha

    views = []
    for t, main, excluded, scores in prepared:
        names = [r.model.name for r in main]
        cells = {}
        for i, r in enumerate(main):
            vs_best = by_best.get((t, r.model.name))
            cells[r.model.name] = Cell(
                value=r.metrics[metric],
                vs_base=by_base.get((t, r.model.name)),
                vs_best=vs_best,
                best=i == 0,
                top_group=i == 0 or (vs_best is not None and (vs_best.p_holm or 1.0) >= alpha),
            )
        top = family_names[t]
        lookup = {(c.a, c.b): c for c in matrices[t]}
        matrix = []
        for a in top:
            row: list[dict | None] = []
            for b in top:
                c = lookup.get((a, b)) or lookup.get((b, a))
                if c is None:
                    row.append(None)
                    continue
                sign = 1 if c.a == a else -1
                row.append({"diff": sign * c.diff, "p": c.p_holm, "a": a, "b": b,
                            "sig": (c.p_holm or 1.0) < alpha})
            matrix.append(row)
        first = main[0]
        metrics = metric_order(first.metrics)
        views.append(TaskView(
            name=t,
            display_name=_task_display(t),
            split=first.task.split,
            quirks=sorted(first.task.quirks),
            n_queries=scores.n,
            n_docs=first.task.n_docs,
            fingerprints=first.task.fingerprints.model_dump() if first.task.fingerprints else None,
            results=main,
            metrics=metrics,
            scores=scores,
            cells=cells,
            matrix_names=top,
            matrix=matrix,
            matrix_limited=len(names) > len(top),
            excluded=sorted(excluded),
            plot=Markup(""),
            reported=[r for r in reported if r.cell.task == t],
            query_pair=_query_pair(names, options.baseline),
            display={r.model.name: r.model.display_name for r in main},
            ranks=dict(zip(names, competition_ranks([r.metrics[metric] for r in main]),
                           strict=True)),
        ))
    return views, filtered


def _oriented(lookup: dict, a: str, b: str) -> PairComparison:
    """The comparison of `a` against `b` from a family computed in either orientation."""
    if (a, b) in lookup:
        return lookup[(a, b)]
    c = lookup[(b, a)]
    return replace(
        c, a=a, b=b, mean_a=c.mean_b, mean_b=c.mean_a, diff=-c.diff,
        ci_low=None if c.ci_high is None else -c.ci_high,
        ci_high=None if c.ci_low is None else -c.ci_low,
        cohens_d=None if c.cohens_d is None else -c.cohens_d, wins=c.losses, losses=c.wins,
    )


def _query_pair(names: list[str], baseline: str) -> tuple[str, str] | None:
    if len(names) < 2:
        return None
    if baseline in names and names[0] != baseline:
        return names[0], baseline
    return names[0], names[1]


def metric_order(metrics: Any) -> list[str]:
    """The standard metrics in their usual order, then any others alphabetically."""
    names = list(metrics)
    return [m for m in STANDARD_METRICS if m in names] + sorted(
        m for m in names if m not in STANDARD_METRICS)


def _reported_matrix(reported: list[Any], metric: str) -> dict:
    """Reported `metric` as model rows x task columns; a cell lists every source's number. The
    in-domain MS MARCO / TREC DL numbers have their own table (_in_domain_reported)."""
    cells: dict[str, dict[str, list[Any]]] = {}
    for r in reported:
        # CQADupStack's forums are parts of its mean (listed by source, not as 12 columns)
        if r.cell.metric == metric and r.cell.task not in IN_DOMAIN and \
                task_kind(r.cell.task) != "subtask":
            cells.setdefault(r.cell.model, {}).setdefault(r.cell.task, []).append(r)
    tasks = sorted({t for row in cells.values() for t in row})
    return {"tasks": tasks, "rows": sorted(cells.items())}


def _reported_aggregates(matrix: dict) -> dict:
    """Per model of the reported matrix: the mean over the tasks it has (with their count) and,
    for each declared benchmark whose every task it reports, the benchmark's mean (the only
    means two models can be compared on). Cells with several sources use the first shown."""
    from benchmark.catalog.benchmarks import load_benchmarks

    benches = [b for b in load_benchmarks()
               if all(e.metric is None for e in b.entries())]  # one metric throughout
    rows: dict[str, dict] = {}
    for model, cells in matrix["rows"]:
        values = {t: c[0].cell.value for t, c in cells.items()}
        means = {}
        for bench in benches:
            tasks = [e.task for e in bench.entries()]
            if all(t in values for t in tasks):
                means[bench.id] = sum(values[t] for t in tasks) / len(tasks)
        rows[model] = {"mean": sum(values.values()) / len(values) if values else None,
                       "n": len(values), "benchmarks": means}
    shown = [b for b in benches if any(b.id in r["benchmarks"] for r in rows.values())]
    return {"rows": rows, "benchmarks": shown}


def _reported_vs_measured(reported: list[Any], table: ResultTable) -> list[dict]:
    """Every reported number next to the number maebench measured for the same model, task and
    metric (when there is one): the side-by-side the Reported page shows."""
    rows: dict[tuple, dict] = {}
    for r in reported:
        result = table.get(r.cell.task, {}).get(r.cell.model)
        if result is None or r.cell.metric not in result.metrics:
            continue
        measured = result.metrics[r.cell.metric]
        key = (r.cell.model, r.cell.task, r.cell.metric, r.cell.value)
        if key in rows:  # the same number from a second source: one row naming both
            rows[key]["sources"].append(r)
            continue
        rows[key] = {"reported": r, "sources": [r], "measured": measured,
                     "diff": measured - r.cell.value}
    order = {m: i for i, m in enumerate(STANDARD_METRICS)}
    return [rows[k] for k in sorted(rows, key=lambda k: (k[0], k[1], order.get(k[2], 99), k[2],
                                                          k[3]))]


IN_DOMAIN = ("msmarco", "trec-dl-2019", "trec-dl-2020")


def _in_domain_reported(reported: list[Any]) -> dict:
    """MS MARCO dev and TREC DL numbers (MRR@10, R@50, R@1000, nDCG@10) as model rows x
    (task, metric) columns: the MS MARCO retrievers report these, not BEIR's nDCG@10."""
    cells: dict[str, dict[tuple[str, str], list[Any]]] = {}
    for r in reported:
        if r.cell.task in IN_DOMAIN:
            cells.setdefault(r.cell.model, {}).setdefault((r.cell.task, r.cell.metric), []).append(r)
    order = {"MRR@10": 0, "nDCG@10": 1, "R@50": 2, "R@100": 3, "R@1000": 4}
    columns = sorted({k for row in cells.values() for k in row},
                     key=lambda k: (IN_DOMAIN.index(k[0]), order.get(k[1], 9), k[1]))
    return {"columns": columns, "rows": sorted(cells.items())}


def _by_source(reported: list[Any]) -> list[tuple[str, list[Any]]]:
    groups: dict[str, list[Any]] = {}
    for r in reported:
        groups.setdefault(r.file, []).append(r)
    return sorted(groups.items())


def _task_display(name: str) -> str:
    from benchmark.catalog.tasks import get_task

    try:
        return get_task(name).display_name
    except MaebenchError:
        return name


# --------------------------------------------------------------------------- plots


def _task_plot(view: TaskView, metric: str, flags: dict | None = None) -> Markup:
    points = []
    for r in view.results:
        speed = throughput(r)
        if speed is None:
            continue
        flag = (flags or {}).get((r.model.name, view.name))
        points.append(Point(
            x=speed, y=r.metrics[metric] * 100, label=r.model.display_name,
            group=_family_class(r.model.family), href=f"../models/{r.model.name}.html",
            hollow=flag is not None,
            tooltip=f"{r.model.display_name}: {metric} {r.metrics[metric] * 100:.2f}, "
                    f"{speed:,.1f} docs/s on {hardware_label(r)}"
                    + (f" ({flag})" if flag else ""),
        ))
    return Markup(scatter(points, "corpus documents indexed per second (log scale)",
                          f"{metric} ×100", log_x=True, y_floor=0.0,
                          title=f"{view.display_name}: quality vs indexing speed"))


def _params_plot(summary: list, cards: dict[str, Any], metric: str, baseline: str) -> Markup:
    """Mean score vs parameter count, for models with every task only: a mean over fewer tasks
    is not comparable, so drawing it next to the others would mislead."""
    points, refs = [], []
    for s in summary:
        if s.mean is None or not s.complete:
            continue
        card = cards.get(s.name)
        params = getattr(card, "parameters", None) if card else None
        if params:
            points.append(Point(
                x=float(params), y=s.mean * 100, label=s.display_name,
                group=_family_class(s.family), href=f"models/{s.name}.html",
                tooltip=f"{s.display_name}: mean {metric} {s.mean * 100:.2f} over all "
                        f"{s.total} tasks, {params / 1e6:,.1f}M parameters",
            ))
        elif s.name == baseline:
            refs.append(RefLine(s.mean * 100, f"{s.display_name} (no parameters)"))
    return Markup(scatter(points, "parameters (log scale)", f"mean {metric} ×100", log_x=True,
                          ref_lines=tuple(refs), title=f"mean {metric} vs model size",
                          y_floor=0.0))


# --------------------------------------------------------------------------- rendering


def _environment(templates: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        autoescape=True,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["x100"] = lambda v: "" if v is None else f"{v * 100:.2f}"
    env.filters["f4"] = lambda v: "" if v is None else f"{v:.4f}"
    env.filters["signed"] = lambda v, scale=100: "" if v is None else f"{v * scale:+.2f}"
    env.filters["pval"] = _fmt_p
    env.filters["num"] = lambda v: "" if v is None else f"{v:,.0f}"
    # a speed keeps one decimal below 10 (3.3 documents/s is not 3)
    env.filters["speed"] = lambda v: "" if v is None else f"{v:,.1f}" if v < 10 else f"{v:,.0f}"
    env.filters["sortval"] = lambda v: "" if v is None else f"{v:.6f}"
    env.globals["family_class"] = _family_class
    env.globals["throughput"] = throughput
    env.filters["group_not_run"] = _group_not_run
    return env


def _group_not_run(cells: list) -> list[tuple[str, list]]:
    groups: dict[str, list] = {}
    for cell in cells:
        reason = cell.get("reason") if isinstance(cell, dict) else getattr(cell, "reason", None)
        groups.setdefault(not_run_group(reason), []).append(cell)
    return sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))


def not_run_group(reason: str | None) -> str:
    """A NOT RUN reason reduced to its kind, so 25 cells missing the same thing read as one
    line: which dataset or checkpoint is missing stays in each cell's own entry."""
    text = reason or ""
    if "no folder" in text or "not in the cache" in text or "no dataset folder" in text:
        return "dataset not available here (pass --data-dir with the BEIR folders)"
    if "cannot load checkpoint" in text:
        return "checkpoint weights not available here (offline, not in the cache)"
    if "never released" in text:
        return "the authors never released the weights"
    return text or "not run"


def _fmt_p(p: float | None) -> str:
    if p is None:
        return ""
    return f"{p:.3f}" if p >= 0.001 else f"{p:.0e}"


def _prepare_out(out_dir: Path) -> None:
    """Replace a previous build, but never a folder that is not one (no silent data loss)."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise SiteError(f"--out {out_dir} is a file")
        if any(out_dir.iterdir()) and not (out_dir / MARKER_FILE).is_file():
            raise SiteError(f"--out {out_dir} is not empty and is not a maebench site build")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    (out_dir / MARKER_FILE).write_text("built by maebench site; replaced on every build\n")


def _copy_static(static: Path, out_dir: Path) -> None:
    target = out_dir / "static"
    target.mkdir()
    if static.is_dir():
        for path in sorted(static.iterdir()):
            if path.is_file():
                shutil.copyfile(path, target / path.name)


TOP_SHOWN = 10  # documents per model and query on the per-query page
SNIPPET = 140  # characters of a document shown there
TOP_MODELS = 12  # models whose top-10 lists the page carries (the best ones and the baseline):
# 40 models x 7,000 MS MARCO queries x 10 ids would make a page of tens of megabytes


def _dataset_for(task: str, options: SiteOptions):
    """The task's data (query texts, judgements, documents) when it is here without a
    download (embedded, --data-dir / MAEBENCH_DATA_DIR, cache); None otherwise."""
    from benchmark.catalog.tasks import get_task
    from benchmark.datasets.beir import load_beir_folder, resolve_folder

    try:
        spec = get_task(task)
        return load_beir_folder(spec, resolve_folder(spec, options.data_dir, download=False))
    except MaebenchError:
        return None


def _per_query_data(view: TaskView, options: SiteOptions) -> dict:
    """Per-query scores of every model, and (where the data is here) each query's text, each
    model's top 10 from its stored run and the judged relevance of those documents."""
    from benchmark.results.store import read_run, result_path

    scores = view.scores
    qids = sorted(view.results[0].per_query[scores.metric])
    dataset = _dataset_for(view.name, options)
    models = []
    shown: set[str] = set()
    carried = {r.model.name for r in view.results[:TOP_MODELS]} | {options.baseline}
    for r in view.results:
        top: list[list[str]] | None = None
        if r.run is not None and r.model.name in carried:
            try:
                run = read_run(result_path(options.results_dir, r.model.name, r.task.name), r)
            except MaebenchError:
                run = None
            if run is not None:
                top = [[d for d, _ in run.get(q, [])[:TOP_SHOWN]] for q in qids]
                shown.update(d for docs in top for d in docs)
        models.append({"name": r.model.name, "display": r.model.display_name,
                       "scores": [round(r.per_query[scores.metric][q], 4) for q in qids],
                       "top": top})
    data: dict = {"metric": scores.metric, "qids": qids, "models": models,
                  "queries": None, "qrels": None, "docs": None}
    if dataset is not None:
        data["queries"] = [dataset.queries.get(q, "") for q in qids]
        data["qrels"] = [{d: g for d, g in sorted(dataset.qrels.get(q, {}).items()) if g > 0}
                         for q in qids]
        docs = {}
        for d in sorted(shown):
            doc = dataset.corpus.get(d)
            if doc is not None:
                text = (doc.title + ": " if doc.title else "") + doc.text
                docs[d] = text[:SNIPPET] + ("…" if len(text) > SNIPPET else "")
        data["docs"] = docs
    return data


def _per_query_rows(view: TaskView, data: dict) -> list[dict]:
    if view.query_pair is None:
        return []
    a, b = (view.results[[r.model.name for r in view.results].index(n)] for n in view.query_pair)
    metric = view.scores.metric
    texts = dict(zip(data["qids"], data["queries"] or [], strict=False))
    rows = []
    for q in sorted(a.per_query[metric]):
        va, vb = round(a.per_query[metric][q], 4), round(b.per_query[metric][q], 4)
        rows.append({"qid": q, "text": texts.get(q, ""), "a": va, "b": vb,
                     "diff": round(va - vb, 4)})
    return sorted(rows, key=lambda r: (-r["diff"], r["qid"]))


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
    from benchmark.pipeline.runner import model_info

    return model_info(card)


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
    reported = _load_reported(options.results_dir)
    tasks = default_tasks(table)
    # tasks outside the leaderboard's means (the embedded smoke test next to benchmark tasks)
    # still get their own page: a demo's or a researcher's first results must be visible
    side = sorted(t for t in table if t not in tasks and task_kind(t) != "subtask")
    left_out = sorted(t for t in table if t not in tasks and t not in side)
    lap("load")

    all_views, filtered = _task_views(table, tasks + side, options, reported)
    views = [v for v in all_views if v.name in tasks]
    side_views = [v for v in all_views if v.name in side]
    tasks = [v.name for v in views]
    summary = summarize(filtered, tasks, None, {v.name: v.scores for v in views}, options.stats)
    lap("stats")

    flags = timing_flags([r for t in table.values() for r in t.values()], cards)
    for view in all_views:
        view.plot = _task_plot(view, metric, flags)
    params_plot = _params_plot(summary, cards, metric, options.baseline)
    n_sized = params_plot.count("<circle")
    if n_sized < 2:  # one point (or a reference line alone) says nothing about size
        params_plot = Markup("")
    lap("plots")

    _prepare_out(options.out_dir)
    _copy_static(static, options.out_dir)
    env = _environment(templates)
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
    families = sorted({_family_class(r.model.family) for r in all_results},
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
    matrix = _reported_matrix(reported, metric)
    pages["reported.html"] = env.get_template("reported.html").render(
        root="", title="Reported numbers", reported=reported, matrix=matrix,
        aggregates=_reported_aggregates(matrix), in_domain=_in_domain_reported(reported),
        versus=_reported_vs_measured(reported, table),
        without_metric=sorted({r.cell.model for r in reported} - {m for m, _ in matrix["rows"]}),
        by_source=_by_source(reported), **common)
    pages["method.html"] = env.get_template("method.html").render(
        root="", title="Method", **common)
    task_tpl = env.get_template("task.html")
    query_tpl = env.get_template("queries.html")
    for view in all_views:
        pages[f"tasks/{view.name}.html"] = task_tpl.render(
            root="../", title=view.display_name, view=view,
            on_board=view.name in tasks, **common)
        if view.query_pair is not None:
            data = _per_query_data(view, options)
            pages[f"queries/{view.name}.html"] = query_tpl.render(
                root="../", title=f"{view.display_name}: per query", view=view,
                data=data, rows=_per_query_rows(view, data), **common)
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

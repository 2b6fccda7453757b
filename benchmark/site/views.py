"""The task views the pages are rendered from, and the statistics behind their markers.

Per task: the main comparable group of results, best first, and ONE family of paired tests
(Holm-corrected) that every marker of the task comes from: the leaderboard's arrows and
shading, the task page's vs-baseline column and its matrix."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from markupsafe import Markup

from benchmark.comparison.compare import (
    ResultTable,
    all_pairs,
    comparable_groups,
    competition_ranks,
    incompatibility,
    ordered_by_score,
    task_scores,
)
from benchmark.core.errors import MaebenchError
from benchmark.evaluation.metrics import STANDARD_METRICS
from benchmark.evaluation.significance import PairComparison, TaskScores, correct, permutations_for
from benchmark.results.schema import Result
from benchmark.site.options import SiteOptions

FAMILY_ORDER = ("mae", "contrastive", "sparse", "supervised")

# --------------------------------------------------------------------------- view models


@dataclass
class Cell:
    """One model's score on one task, with the markers its task's comparison family gives it."""

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
    """Everything a task's rows, page and plot show: the comparable group and its tests."""
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


def family_class(family: str) -> str:
    """The CSS class of a model family (its colour and filter); families outside FAMILY_ORDER
    share one, so a new family name never needs a stylesheet change."""
    return family if family in FAMILY_ORDER else "other"


# --------------------------------------------------------------------------- statistics


def task_views(
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


def _task_display(name: str) -> str:
    from benchmark.catalog.tasks import get_task

    try:
        return get_task(name).display_name
    except MaebenchError:
        return name

"""Comparisons of stored results: which ones may be compared, paired tests per task, and the
across-task summary (mean over covered tasks, coverage, rank intervals).

Shared by `maebench compare` and the leaderboard builder, so both show the same numbers.
What build_report returns, and its text forms, is benchmark.comparison.report; the terminal
tables are benchmark.comparison.console.
Two results are compared only when they were evaluated on the same data in the same way
(task, split, quirks, dataset fingerprints, query set); anything else is refused, never mixed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from benchmark.catalog.tasks import MAIN_METRIC
from benchmark.comparison.report import ComparisonReport, ModelSummary
from benchmark.evaluation.significance import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_PERMUTATIONS,
    DEFAULT_SEED,
    IncomparableResultsError,
    PairComparison,
    TaskScores,
    correct,
    permutations_for,
    rank_intervals,
)
from benchmark.results.result_store import iter_results
from benchmark.results.schema import Result

# task -> model -> result
ResultTable = dict[str, dict[str, Result]]


@dataclass(frozen=True)
class StatsOptions:
    metric: str = MAIN_METRIC
    n_perm: int = DEFAULT_PERMUTATIONS
    n_boot: int = DEFAULT_BOOTSTRAP
    seed: int = DEFAULT_SEED
    alpha: float = 0.05


# --------------------------------------------------------------------------- loading


def load_table(results_dir: Path) -> ResultTable:
    table: ResultTable = {}
    for _, result in iter_results(results_dir):
        table.setdefault(result.task.name, {})[result.model.name] = result
    return {task: dict(sorted(models.items())) for task, models in sorted(table.items())}


def task_kind(name: str) -> str:
    """'benchmark', 'embedded' (smoke test) or 'subtask' (part of an aggregate, e.g. a
    CQADupStack forum): only benchmark tasks enter cross-task means by default."""
    from benchmark.catalog.tasks import get_task
    from benchmark.core.errors import MaebenchError

    try:
        spec = get_task(name)
    except MaebenchError:
        return "benchmark"
    if spec.part_of is not None:
        return "subtask"
    return "embedded" if "embedded" in spec.quirks else "benchmark"


def default_tasks(names: Iterable[str]) -> list[str]:
    """Benchmark tasks among `names`; the embedded smoke test only when nothing else is there."""
    names = sorted(set(names))
    kinds = {n: task_kind(n) for n in names}
    bench = [n for n in names if kinds[n] == "benchmark"]
    return bench or [n for n in names if kinds[n] == "embedded"]


# --------------------------------------------------------------------------- comparability


def incompatibility(a: Result, b: Result, metric: str = MAIN_METRIC) -> str | None:
    """Why `a` and `b` cannot be compared on `metric` (None when they can): the data parts of
    their EvalKeys (benchmark.results.identity, shared with submit, reproduce, the runner) must agree."""
    from benchmark.results.identity import EvalKey

    for result in (a, b):
        if metric not in result.per_query:
            return f"{result.model.name} on {result.task.name} has no per-query {metric}"
    differs = EvalKey.of(a).differences(EvalKey.of(b), with_config=False)
    return f"their {differs[0]} differ" if differs else None


def check_comparable(a: Result, b: Result, metric: str = MAIN_METRIC) -> None:
    reason = incompatibility(a, b, metric)
    if reason:
        raise IncomparableResultsError(
            f"cannot compare {a.model.name} and {b.model.name} on {a.task.name}: {reason}"
        )


def comparable_groups(results: Sequence[Result], metric: str = MAIN_METRIC) -> list[list[Result]]:
    """Partition one task's results into mutually comparable groups, largest first (ties by the
    first model name), so the leaderboard can test within the main group and flag the rest."""
    from benchmark.results.identity import EvalKey

    groups: dict[str, list[Result]] = {}
    for result in results:
        if metric not in result.per_query:
            continue
        groups.setdefault(EvalKey.of(result).data_id(), []).append(result)
    ordered = [sorted(g, key=lambda r: r.model.name) for g in groups.values()]
    return sorted(ordered, key=lambda g: (-len(g), g[0].model.name))


def task_scores(results: Sequence[Result], options: StatsOptions) -> TaskScores:
    """Aligned per-query scores (queries sorted by id) of mutually comparable results."""
    if not results:
        raise IncomparableResultsError("no results to compare")
    first = results[0]
    for other in results[1:]:
        check_comparable(first, other, options.metric)
    if options.metric not in first.per_query:
        raise IncomparableResultsError(
            f"{first.model.name} on {first.task.name} has no per-query {options.metric}"
        )
    qids = sorted(first.per_query[options.metric])
    matrix = np.array([[r.per_query[options.metric][q] for q in qids] for r in results])
    return TaskScores(
        first.task.name,
        options.metric,
        [r.model.name for r in results],
        matrix,
        n_perm=options.n_perm,
        n_boot=options.n_boot,
        seed=options.seed,
    )


def ordered_by_score(results: Iterable[Result], metric: str) -> list[Result]:
    return sorted(results, key=lambda r: (-r.metrics.get(metric, float("-inf")), r.model.name))


def competition_ranks(scores: Sequence[float]) -> list[int]:
    """Standard competition ranking ("1224"): one plus the number of strictly better scores, so
    tied scores share the best rank and the next one skips. The one rule for every rank maebench
    prints (task pages, the leaderboard, `compare`, `submit`, benchmark standings): two copies of
    the same model used to read as #3 and #4 on a task page while `compare` called both #3."""
    return [1 + sum(other > score for other in scores) for score in scores]


def all_pairs(names: Sequence[str]) -> list[tuple[str, str]]:
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]


# --------------------------------------------------------------------------- summaries


def summarize(
    table: ResultTable,
    tasks: Sequence[str],
    models: Sequence[str] | None,
    scores_by_task: dict[str, TaskScores],
    options: StatsOptions,
) -> list[ModelSummary]:
    """Mean score over the tasks each model has (coverage shown), models with every task first.

    Only complete models are ranked; their rank interval comes from resampling the queries of
    every task (the mean over tasks recomputed per bootstrap replicate), so overlapping
    intervals mean the ranks are not separable at this sample size."""
    names = sorted(models) if models is not None else sorted({m for t in tasks for m in table[t]})
    out = []
    for name in names:
        scores = {t: table[t][name].metrics[options.metric] for t in tasks
                  if name in table[t] and options.metric in table[t][name].metrics}
        info = next(table[t][name].model for t in (*tasks, *table) if name in table[t])
        out.append(ModelSummary(
            name=name,
            display_name=info.display_name,
            family=info.family,
            scores=scores,
            mean=float(np.mean(list(scores.values()))) if scores else None,
            covered=len(scores),
            total=len(tasks),
        ))
    out.sort(key=lambda s: (not s.complete, -s.covered, -(s.mean or 0.0), s.name))
    complete = [s for s in out if s.complete]
    usable = all(t in scores_by_task and all(s.name in scores_by_task[t].index for s in complete)
                 for t in tasks)
    if complete and tasks and usable:
        boots = []
        for t in tasks:
            ts = scores_by_task[t]
            cols = [ts.index[s.name] for s in complete]
            boots.append(ts.bootstrap_means()[:, cols])
        low, high = rank_intervals(boots)
        ranks = competition_ranks([s.mean for s in complete])
        for i, s in enumerate(complete):
            # tied means share the best rank, as in the bootstrap replicates, and the interval
            # always holds the observed rank (a percentile interval need not)
            s.rank = ranks[i]
            s.rank_low, s.rank_high = min(int(low[i]), s.rank), max(int(high[i]), s.rank)
    return out


def build_report(
    table: ResultTable,
    tasks: Sequence[str] | None,
    models: Sequence[str] | None,
    options: StatsOptions,
    baseline: str | None = None,
) -> ComparisonReport:
    """All pairwise comparisons of `models` (default: every model) on `tasks` (default: the
    tasks all given models share), corrected together as one family. Given models keep their
    order (A before B as typed); otherwise models are ordered by score. With `baseline`, only
    the comparisons of every other model with it (one-vs-all, a smaller family)."""
    from benchmark.core.errors import MaebenchError

    if baseline is not None and models is not None and baseline not in models:
        models = [*models, baseline]
    if baseline is not None and not any(baseline in table[t] for t in table):
        raise MaebenchError(f"no results for baseline '{baseline}'")

    if models is not None:
        missing = [m for m in models if not any(m in table[t] for t in table)]
        if missing:
            raise MaebenchError(f"no results for model(s): {', '.join(missing)}")
        if len(set(models)) < 2 and not tasks:
            raise MaebenchError("give at least two models to compare")
    if tasks is None:
        if models is None:
            raise MaebenchError("give --task or --models")
        shared = [t for t in table if all(m in table[t] for m in models)]
        tasks = default_tasks(shared)
        if not tasks:
            raise MaebenchError(f"models {', '.join(models)} share no task")
    for t in tasks:
        if t not in table:
            raise MaebenchError(f"no results for task '{t}' (have: {', '.join(table) or 'none'})")

    comparisons: list[PairComparison] = []
    scores_by_task: dict[str, TaskScores] = {}
    if models is not None:
        position = {m: i for i, m in enumerate(dict.fromkeys(models))}
        selected = {t: sorted((r for name, r in table[t].items() if name in position),
                              key=lambda r: position[r.model.name]) for t in tasks}
    else:
        selected = {t: ordered_by_score(table[t].values(), options.metric) for t in tasks}

    def pairs(names: list[str]) -> list[tuple[str, str]]:
        if baseline is None:
            return all_pairs(names)
        return [(n, baseline) for n in names if n != baseline] if baseline in names else []

    family = sum(len(pairs([r.model.name for r in c])) for c in selected.values())
    options = replace(options, n_perm=permutations_for(family, options.alpha, options.n_perm))
    for t in tasks:
        chosen = selected[t]
        if len(chosen) < 2:
            continue
        ts = task_scores(chosen, options)
        scores_by_task[t] = ts
        comparisons.extend(ts.compare(pairs([r.model.name for r in chosen])))
    if not comparisons:
        raise MaebenchError("fewer than two models on every task given: nothing to compare")
    comparisons = correct(comparisons)
    summary = summarize(table, tasks, models, scores_by_task, options)
    return ComparisonReport(
        metric=options.metric,
        tasks=list(tasks),
        models=[s.name for s in summary],
        comparisons=comparisons,
        summary=summary,
        given_order=list(dict.fromkeys(models)) if models is not None else None,
        baseline=baseline,
        settings={
            "test": "paired randomization (sign flip), two-sided, p=(count+1)/(n_perm+1)",
            "n_perm": options.n_perm,  # raised with the family size, see permutations_for
            "bootstrap": "paired percentile bootstrap of the mean difference, 95%",
            "n_boot": options.n_boot,
            "seed": options.seed,
            "alpha": options.alpha,
        },
    )

"""Who is ranked on a declared benchmark (benchmark.catalog.benchmarks): full coverage of its
tasks with comparable results, the mean of each task's metric, ties sharing a rank; the others
listed by coverage. Shared by the site's benchmark pages and anyone reading a benchmark's
table, so a ranking is computed in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from benchmark.catalog.benchmarks import Benchmark
from benchmark.comparison.compare import comparable_groups, competition_ranks
from benchmark.results.identity import EvalKey, config_hash
from benchmark.results.schema import ModelInfo


@dataclass
class Standing:
    model: str
    display_name: str
    scores: dict[str, float]  # task -> score on that task's metric (comparable results only)
    missing: list[str]  # tasks without a result
    incomparable: list[str]  # tasks whose result is not comparable with the task's main group
    config_differs: list[str] = field(default_factory=list)  # tasks stored with another config
    mean: float | None = None  # only with full coverage
    rank: int | None = None

    @property
    def covered(self) -> int:
        return len(self.scores)


def standings(bench: Benchmark, table, cards: dict | None = None) -> list[Standing]:
    """Ranked (full coverage, mean of the per-task metric, ties share a rank) then the others by
    coverage. `table` is compare.ResultTable (task -> model -> Result); `cards` the current
    registry, to mark results whose stored config differs from the card."""
    tasks = [e.task for e in bench.entries()]
    main_group: dict[str, set[str]] = {}
    for task in tasks:
        metric = bench.metric_for(task)
        groups = comparable_groups(list(table.get(task, {}).values()), metric)
        main_group[task] = {r.model.name for r in groups[0]} if groups else set()
    models = sorted({m for t in tasks for m in table.get(t, {})})
    out = []
    for model in models:
        scores, missing, incomparable, differs = {}, [], [], []
        display = model
        for task in tasks:
            result = table.get(task, {}).get(model)
            if result is None:
                missing.append(task)
                continue
            display = result.model.display_name
            if model not in main_group[task]:
                incomparable.append(task)
                continue
            scores[task] = result.metrics[bench.metric_for(task)]
            if cards is not None and config_differs(result, cards.get(model)):
                differs.append(task)
        standing = Standing(model, display, scores, missing, incomparable, differs)
        if len(scores) == len(tasks):
            standing.mean = sum(scores.values()) / len(tasks)
        out.append(standing)
    ranked = sorted((s for s in out if s.mean is not None), key=lambda s: (-s.mean, s.model))
    for standing, rank in zip(ranked, competition_ranks([s.mean for s in ranked]), strict=True):
        standing.rank = rank
    others = sorted((s for s in out if s.mean is None), key=lambda s: (-s.covered, s.model))
    return ranked + others


def config_differs(result, card) -> bool:
    """True when the result was computed with another configuration than the current card's
    (or the card is gone): its number no longer describes what the registry calls that model."""
    if card is None:
        return True
    return EvalKey.of(result).config != config_hash(ModelInfo.from_card(card).config)

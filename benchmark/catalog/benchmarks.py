"""Declared benchmarks (BEIR-18, BEIR-13 public, MS MARCO + DL, MTEB English retrieval) as data,
and who may be ranked on them.

Before, the leaderboard's task set was whatever happened to have results, so one new task
un-ranked every model without it and no two sites averaged over the same tasks. A benchmark now
names its tasks and main metric (benchmark/data/benchmarks.yaml); a model is ranked on it only
with a comparable result on every task (its EvalKey's data part equal to the task's main
comparable group), and is otherwise listed with its coverage, never averaged over a subset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from benchmark.errors import MaebenchError
from benchmark.paths import EMBEDDED_DATA_DIR
from benchmark.validation import validate_yaml

ID_PATTERN = r"^[a-z0-9][a-z0-9._\-]{0,79}$"


class BenchmarkError(MaebenchError):
    """benchmarks.yaml is malformed or names an unknown task or metric."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BenchmarkTask(_Strict):
    task: str = Field(pattern=ID_PATTERN)
    metric: str | None = None  # the benchmark's main metric unless set (MS MARCO dev: MRR@10)


class Benchmark(_Strict):
    id: str = Field(pattern=ID_PATTERN)
    title: str
    description: str
    source: str
    main_metric: str
    tasks: list[BenchmarkTask | str] = Field(min_length=1)

    @model_validator(mode="after")
    def _known(self) -> Benchmark:
        from benchmark.evaluate import Metric
        from benchmark.tasks import get_task

        Metric.parse(self.main_metric)
        names = [t.task for t in self.entries()]
        if len(set(names)) != len(names):
            raise ValueError("tasks: a task is listed twice")
        for entry in self.entries():
            get_task(entry.task)  # raises for an unknown task
            if entry.metric:
                Metric.parse(entry.metric)
        return self

    def entries(self) -> list[BenchmarkTask]:
        return [BenchmarkTask(task=t) if isinstance(t, str) else t for t in self.tasks]

    def metric_for(self, task: str) -> str:
        for entry in self.entries():
            if entry.task == task:
                return entry.metric or self.main_metric
        raise KeyError(task)


class BenchmarkFile(_Strict):
    benchmarks: list[Benchmark] = Field(min_length=1)


def parse_benchmarks(text: str, origin: str) -> list[Benchmark]:
    try:
        parsed = validate_yaml(text, BenchmarkFile, origin, BenchmarkError, "a benchmarks file")
    except MaebenchError as exc:
        raise BenchmarkError(str(exc)) from exc
    ids = [b.id for b in parsed.benchmarks]
    if len(set(ids)) != len(ids):
        raise BenchmarkError(f"{origin}: a benchmark id is declared twice")
    return parsed.benchmarks


@lru_cache(maxsize=4)
def load_benchmarks(path: Path = EMBEDDED_DATA_DIR / "benchmarks.yaml") -> tuple[Benchmark, ...]:
    return tuple(parse_benchmarks(path.read_text(encoding="utf-8"), str(path)))


def get_benchmark(benchmark_id: str) -> Benchmark:
    for bench in load_benchmarks():
        if bench.id == benchmark_id:
            return bench
    known = ", ".join(b.id for b in load_benchmarks())
    raise BenchmarkError(f"unknown benchmark '{benchmark_id}' (known: {known})")


# --------------------------------------------------------------------------- standings


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
    from benchmark.compare import comparable_groups

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
    for index, standing in enumerate(ranked):
        previous = ranked[index - 1] if index else None
        standing.rank = previous.rank if previous and previous.mean == standing.mean else index + 1
    others = sorted((s for s in out if s.mean is None), key=lambda s: (-s.covered, s.model))
    return ranked + others


def config_differs(result, card) -> bool:
    """True when the result was computed with another configuration than the current card's
    (or the card is gone): its number no longer describes what the registry calls that model."""
    from benchmark.evalkey import EvalKey, config_hash
    from benchmark.runner import model_info

    if card is None:
        return True
    return EvalKey.of(result).config != config_hash(model_info(card).config)


# --------------------------------------------------------------------------- site pages


def site_pages(env, results_dir: Path, out_dir: Path) -> list[tuple[str, str]]:
    """leaderboard.EXTRA_PAGES hook: benchmarks.html and one benchmark-<id>.html per benchmark."""
    from benchmark.compare import load_table

    table = load_table(results_dir)
    cards = env.globals.get("cards")
    benches = load_benchmarks()
    rows = []
    for bench in benches:
        board = standings(bench, table, cards)
        rows.append({"bench": bench, "ranked": sum(1 for s in board if s.rank is not None),
                     "partial": sum(1 for s in board if s.rank is None)})
        html = env.get_template("benchmark.html").render(
            title=bench.title, root="", bench=bench, standings=board,
            tasks=[e.task for e in bench.entries()], marks_config=cards is not None,
        )
        (out_dir / f"benchmark-{bench.id}.html").write_text(html, encoding="utf-8")
    html = env.get_template("benchmark.html").render(title="Benchmarks", root="", bench=None, rows=rows)
    (out_dir / "benchmarks.html").write_text(html, encoding="utf-8")
    return [("Benchmarks", "benchmarks.html")]

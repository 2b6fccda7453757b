"""Declared benchmarks (BEIR-18, BEIR-13 public, MS MARCO + DL, MTEB English retrieval) as data,
and who may be ranked on them.

Before, the leaderboard's task set was whatever happened to have results, so one new task
un-ranked every model without it and no two sites averaged over the same tasks. A benchmark now
names its tasks and main metric (benchmark/data/benchmarks.yaml); a model is ranked on it only
with a comparable result on every task (its EvalKey's data part equal to the task's main
comparable group), and is otherwise listed with its coverage, never averaged over a subset.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, model_validator

from benchmark.core.errors import MaebenchError
from benchmark.core.paths import EMBEDDED_DATA_DIR
from benchmark.core.validation import Strict, validate_yaml

ID_PATTERN = r"^[a-z0-9][a-z0-9._\-]{0,79}$"


class BenchmarkError(MaebenchError):
    """benchmarks.yaml is malformed or names an unknown task or metric."""


class BenchmarkTask(Strict):
    task: str = Field(pattern=ID_PATTERN)
    metric: str | None = None  # the benchmark's main metric unless set (MS MARCO dev: MRR@10)


class Benchmark(Strict):
    id: str = Field(pattern=ID_PATTERN)
    title: str
    description: str
    source: str
    main_metric: str
    tasks: list[BenchmarkTask | str] = Field(min_length=1)

    @model_validator(mode="after")
    def _known(self) -> Benchmark:
        from benchmark.catalog.tasks import get_task
        from benchmark.evaluation.metrics import Metric

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


class BenchmarkFile(Strict):
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


"""The public API (`from benchmark import run, compare, ...`): small, documented, lazy, and the
same numbers as the layers it calls."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import benchmark
from benchmark.catalog.tasks import get_task
from benchmark.datasets.beir import load_dataset
from benchmark.results.result_store import read_run, result_path
from tests.helpers.imports import loaded_by
from tests.helpers.paths import REPO

VERBS = ("run", "evaluate", "compare", "load_results", "reproduce")


def test_the_api_is_the_verbs_each_callable_documented_and_in_the_readme():
    assert benchmark.__all__[:len(VERBS)] == list(VERBS)  # then the lookups and types
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for name in VERBS:
        verb = getattr(benchmark, name)
        assert callable(verb) and inspect.getdoc(verb), name
        assert f"benchmark.{name}(" in readme, f"README does not show benchmark.{name}"
    assert benchmark.__version__


def test_importing_the_package_loads_no_heavy_library():
    assert loaded_by("import benchmark", ("torch", "transformers", "ranx", "numpy")) == []


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("api") / "results"
    for model in ("bm25", "bm25-multifield"):
        benchmark.run(model, "tiny", results_dir=results)
    return results


def test_run_stores_and_returns_the_result(stored: Path):
    [result] = benchmark.load_results(stored, model="bm25")
    assert result.task.name == "tiny" and 0 < result.metrics["nDCG@10"] <= 1
    assert result_path(stored, "bm25", "tiny").is_file()
    assert {r.model.name for r in benchmark.load_results(stored, task="tiny")} == {"bm25", "bm25-multifield"}


def test_evaluate_gives_the_stored_numbers_from_the_stored_run(stored: Path):
    [result] = benchmark.load_results(stored, model="bm25")
    dataset = load_dataset(get_task("tiny"))
    run = read_run(result_path(stored, "bm25", "tiny"), result)
    evaluation = benchmark.evaluate(dataset.qrels, run, ["nDCG@10"])
    assert evaluation.aggregates["nDCG@10"] == pytest.approx(result.metrics["nDCG@10"], abs=1e-9)


def test_compare_two_stored_models(stored: Path):
    report = benchmark.compare(["bm25", "bm25-multifield"], ["tiny"], results_dir=stored, n_perm=1000)
    assert [(c.a, c.b, c.task) for c in report.comparisons] == [("bm25", "bm25-multifield", "tiny")]


@pytest.mark.slow
def test_reproduce_only_compares_what_is_stored(tmp_path: Path):
    report = benchmark.reproduce("bm25-beir", results_dir=REPO / "results", no_run=True)
    assert report.id == "bm25-beir" and report.cells
    assert {c.status for c in report.cells} <= {"OK", "OKish", "FAIL", "NOT RUN"}

"""The public API beyond the verbs: the lookups (as mteb's get_task / get_model_meta /
get_benchmark), the types the verbs take and return, and results a user can print."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import benchmark
from benchmark.core.errors import MaebenchError
from tests.helpers.imports import loaded_by

REPO = Path(benchmark.__file__).resolve().parents[1]  # the checkout under test


def test_all_is_the_verbs_then_the_lookups_then_the_types():
    assert benchmark.__all__ == [*benchmark.VERBS, *benchmark.LOOKUPS, *benchmark.TYPES]
    for name in benchmark.__all__:
        assert name in dir(benchmark), name


def test_each_type_is_the_class_the_layers_use():
    from importlib import import_module

    for name, (module, attr) in benchmark.TYPES.items():
        assert getattr(benchmark, name) is getattr(import_module(module), attr), name
        assert inspect.isclass(getattr(benchmark, name)), name
    with pytest.raises(AttributeError):
        benchmark.NoSuchThing  # noqa: B018


def test_naming_a_type_stays_lazy():
    assert loaded_by("from benchmark import Result, ModelCard, TaskSpec, ComparisonReport",
                     ("torch", "transformers", "ranx")) == []


def test_lookups_return_the_catalogs_objects_and_name_the_closest_on_a_typo():
    card, task, bench = (benchmark.get_card("bm25"), benchmark.get_task("scifact"),
                         benchmark.get_benchmark("beir-13"))
    assert isinstance(card, benchmark.ModelCard) and card.name == "bm25"
    assert isinstance(task, benchmark.TaskSpec) and task.fingerprints is not None
    assert isinstance(bench, benchmark.Benchmark) and "scifact" in {t.task for t in bench.entries()}
    for lookup in (benchmark.get_card, benchmark.get_task, benchmark.get_benchmark):
        assert inspect.getdoc(lookup), lookup
    with pytest.raises(MaebenchError, match="scifact"):
        benchmark.get_task("scifac")
    with pytest.raises(MaebenchError, match="bm25"):
        benchmark.get_card("bm2")


def test_run_takes_what_the_lookups_return(tmp_path: Path):
    result = benchmark.run(benchmark.get_card("bm25"), benchmark.get_task("tiny"),
                           results_dir=tmp_path)
    assert isinstance(result, benchmark.Result)
    assert benchmark.run("bm25", "tiny", results_dir=tmp_path) == result  # stored: stands in


def test_compare_returns_a_report_that_prints_as_markdown(tmp_path: Path):
    for model in ("bm25", "bm25-multifield"):
        benchmark.run(model, "tiny", results_dir=tmp_path)
    report = benchmark.compare(["bm25", "bm25-multifield"], ["tiny"], results_dir=tmp_path,
                               n_perm=1000, n_boot=1000)
    from benchmark.comparison.report import to_markdown

    assert isinstance(report, benchmark.ComparisonReport)
    assert str(report) == report.to_markdown() == to_markdown(report)
    assert str(report).startswith("## Pairwise comparisons (nDCG@10)")
    assert "| tiny | bm25 | bm25-multifield |" in str(report)
    doc = inspect.getdoc(benchmark.compare)
    assert "print(report)" in doc and "benchmark.comparison.compare.to_markdown" not in doc


@pytest.mark.slow
def test_a_reproduction_report_prints_as_its_table():
    report = benchmark.reproduce("bm25-beir", results_dir=REPO / "results", no_run=True)
    from benchmark.reproduction.reproduce import format_table

    assert isinstance(report, benchmark.ReproductionReport)
    assert str(report) == "\n".join(format_table(report))

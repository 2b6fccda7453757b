"""benchmark.comparison.compare and `maebench compare`: comparability checks, reports and their formats."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from benchmark.catalog.tasks import Fingerprints
from benchmark.cli import app
from benchmark.comparison.compare import StatsOptions, build_report, load_table
from benchmark.comparison.report import to_json, to_latex, to_markdown
from benchmark.evaluation.significance import IncomparableResultsError
from benchmark.results.result_store import write_result
from tests.helpers.results import FAST, make_result, synthetic_results


def test_report_finds_the_clear_difference_and_not_the_noise(results_dir):
    table = load_table(synthetic_results(results_dir))
    report = build_report(table, ["scifact"], None, FAST)
    by_pair = {(c.a, c.b): c for c in report.comparisons}
    assert report.models[0] == "strong"
    strong = by_pair[("strong", "bm25")] if ("strong", "bm25") in by_pair else by_pair[
        ("strong", "near")]
    assert strong.p_holm < 0.01 and strong.diff > 0.1
    noise = by_pair.get(("near", "bm25")) or by_pair[("bm25", "near")]
    assert noise.p_holm > 0.05
    assert len(report.comparisons) == 3  # all pairs of three models, one family


def test_models_across_shared_tasks_and_summary(results_dir):
    table = load_table(synthetic_results(results_dir))
    report = build_report(table, None, ["bm25", "strong"], FAST)
    assert report.tasks == ["nfcorpus", "scifact"]
    assert len(report.comparisons) == 2
    first = report.summary[0]
    assert first.name == "strong" and first.coverage == "2/2" and first.rank == 1
    assert (first.rank_low, first.rank_high) == (1, 1)


def test_incomplete_coverage_is_listed_after_complete_and_not_ranked(results_dir):
    synthetic_results(results_dir)
    write_result(results_dir, make_result("solo", "scifact", np.ones(120)), None)
    table = load_table(results_dir)
    report = build_report(table, ["scifact", "nfcorpus"], None, FAST)
    solo = report.summary[-1]
    assert solo.name == "solo" and solo.coverage == "1/2" and solo.rank is None
    assert all(s.complete for s in report.summary[:-1])


def test_refuses_different_fingerprints(results_dir):
    synthetic_results(results_dir)
    other = Fingerprints(corpus="d" * 64, queries="b" * 64, qrels="c" * 64)
    write_result(results_dir, make_result("drift", "scifact", np.ones(120), fingerprints=other),
                 None)
    table = load_table(results_dir)
    with pytest.raises(IncomparableResultsError, match=r"fingerprints \(corpus\)"):
        build_report(table, ["scifact"], ["bm25", "drift"], FAST)


def test_refuses_different_query_sets(results_dir):
    synthetic_results(results_dir)
    write_result(results_dir, make_result("short", "scifact", np.ones(100)), None)
    with pytest.raises(IncomparableResultsError, match="query set"):
        build_report(load_table(results_dir), ["scifact"], ["bm25", "short"], FAST)


def test_formats_are_deterministic_and_escape(results_dir):
    table = load_table(synthetic_results(results_dir))
    one = build_report(table, ["scifact"], None, FAST)
    two = build_report(load_table(results_dir), ["scifact"], None, FAST)
    assert to_json(one) == to_json(two)
    data = json.loads(to_json(one))
    assert data["settings"]["n_perm"] == 2000 and len(data["comparisons"]) == 3
    markdown = to_markdown(one)
    assert markdown.startswith("## Pairwise comparisons") and "| scifact |" in markdown
    latex = to_latex(one)
    assert r"\begin{tabular}" in latex and r"nDCG@10" in latex and "p Holm" in latex


def test_cli_compare_writes_files_and_reports_errors(results_dir, tmp_path):
    synthetic_results(results_dir)
    runner = CliRunner()
    out = tmp_path / "cmp.md"
    result = runner.invoke(app, ["compare", "--task", "scifact", "--results-dir",
                                 str(results_dir), "--out", str(out), "--permutations", "10000",
                                 "--bootstrap", "2000"])
    assert result.exit_code == 0, result.output
    assert "pairwise" in result.output and "strong" in result.output
    assert "| strong |" in out.read_text()
    result = runner.invoke(app, ["compare", "--models", "bm25,strong", "--results-dir",
                                 str(results_dir), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["tasks"] == ["nfcorpus", "scifact"]
    result = runner.invoke(app, ["compare", "--models", "bm25,nope", "--results-dir",
                                 str(results_dir)])
    assert result.exit_code != 0 and "nope" in str(result.exception)


def test_committed_real_results_bm25_vs_minilm(tmp_path):
    """On the committed real SciFact results: BM25 beats MiniLM (paired test, p < 0.05)."""
    import shutil

    source = Path(__file__).resolve().parents[1] / "results"
    results = tmp_path / "results"
    for model in ("bm25", "all-minilm-l6-v2"):
        (results / model).mkdir(parents=True)
        shutil.copy(source / model / "scifact.json", results / model)
        shutil.copy(source / model / "scifact.run.gz", results / model)
    report = build_report(load_table(results), ["scifact"], None, StatsOptions())
    (c,) = report.comparisons
    assert (c.a, c.b, c.n) == ("bm25", "all-minilm-l6-v2", 300)
    assert 0.0 < c.p_value < 0.05

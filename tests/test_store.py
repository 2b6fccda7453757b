"""ResultStore: one writer, journaled commits (kill -9 at any step leaves old or new), claims
against concurrent runs, recovery of leftovers, hash-checked reads; EvalKey identity."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from benchmark.catalog.registry import get_card
from benchmark.catalog.tasks import get_task
from benchmark.core.errors import ResultError
from benchmark.pipeline.runner import RunOptions, run_task
from benchmark.results.identity import EvalKey
from benchmark.results.result_store import META, ResultStore, read_result, run_path
from tests.helpers.paths import REPO


@pytest.fixture
def stored(results_dir: Path) -> Path:
    return run_task(get_card("bm25"), get_task("tiny"), RunOptions(results_dir=results_dir))


def _pair(path: Path) -> tuple[bytes, bytes]:
    return path.read_bytes(), run_path(path).read_bytes()


def test_write_records_eval_key_and_refuses_existing(stored: Path, results_dir: Path):
    result = read_result(stored)
    assert result.eval_key == EvalKey.of(result)
    store = ResultStore(results_dir)
    with pytest.raises(ResultError, match="already exists; pass --overwrite"):
        store.write(result, run_path(stored).read_bytes())
    store.write(result, run_path(stored).read_bytes(), overwrite=True)
    assert sorted(p.name for p in (results_dir / META).iterdir()) == ["claims", "lock"]


def test_read_refuses_a_json_next_to_another_run_file(stored: Path):
    run_path(stored).write_bytes(b"not the run")
    with pytest.raises(ResultError, match="sha256 does not match"):
        read_result(stored)
    run_path(stored).unlink()
    with pytest.raises(ResultError, match="cannot read run file"):
        read_result(stored)


def test_read_refuses_an_eval_key_that_contradicts_the_fields(stored: Path):
    raw = json.loads(stored.read_text())
    raw["eval_key"]["split"] = "dev"
    stored.write_text(json.dumps(raw))
    with pytest.raises(ResultError, match="field eval_key: its split differ"):
        read_result(stored)


def test_eval_key_comparable_vs_same_evaluation(stored: Path):
    result = read_result(stored)
    key = EvalKey.of(result)
    other_config = result.model_copy(update={"model": result.model.model_copy(
        update={"config": {**result.model.config, "k1": 1.2}})})
    other = EvalKey.of(other_config)
    assert key.comparable(other) and not key.same_evaluation(other)
    assert key.differences(other) == ["model configuration"]
    fewer = result.model_copy(update={"per_query": {
        m: dict(list(v.items())[:-1]) for m, v in result.per_query.items()}})
    assert EvalKey.of(fewer).differences(key, with_config=False) == ["query set"]


def test_claim_refuses_a_concurrent_run(results_dir: Path):
    store = ResultStore(results_dir)
    with store.claim("bm25", "tiny", overwrite=False):
        with (pytest.raises(ResultError, match="being computed by another maebench process"),
              store.claim("bm25", "tiny", overwrite=True)):
            pass
        with pytest.raises(ResultError, match="being computed"):
            run_task(get_card("bm25"), get_task("tiny"), RunOptions(results_dir=results_dir))
    with store.claim("bm25", "tiny", overwrite=False):  # released with its holder
        pass


def test_results_folder_that_is_a_file_is_one_line_error(tmp_path: Path):
    blocker = tmp_path / "results"
    blocker.write_text("x")
    with pytest.raises(ResultError, match="not a folder"):
        run_task(get_card("bm25"), get_task("tiny"), RunOptions(results_dir=blocker))


CRASHER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    import benchmark.results.result_store as store
    from benchmark.results.result_store import read_result, run_path
    target, step, path = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    def die(name):
        if name == step:
            os.kill(os.getpid(), signal.SIGKILL)
    store._step = die
    result = read_result(path)
    new = result.model_copy(update={"metrics": {**result.metrics, "nDCG@10": 0.123}})
    run = run_path(path).read_bytes() + b""
    import gzip
    run = gzip.compress(gzip.decompress(run) + b"extra Q0 d 1 1.0 maebench\\n", mtime=0)
    from benchmark.results.runfiles import sha256_bytes
    new = new.model_copy(update={"run": new.run.model_copy(update={"sha256": sha256_bytes(run)})})
    store.ResultStore(Path(target)).write(new, run, overwrite=True)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("step", ["staged", "journal-written", "committed", "renamed-0", "renamed-1"])
def test_kill_9_at_any_step_leaves_old_or_new_never_a_mix(stored: Path, results_dir: Path, step: str):
    old = _pair(stored)
    proc = subprocess.run(
        [sys.executable, "-c", CRASHER, str(results_dir), step, str(stored)],
        cwd=REPO, capture_output=True, timeout=60,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    ResultStore(results_dir)  # recovery on open
    result = read_result(stored)  # hash-checked: a mix would raise
    now = _pair(stored)
    if step in ("staged", "journal-written"):
        assert now == old
    else:
        assert now != old and result.metrics["nDCG@10"] == 0.123
    assert sorted(p.name for p in (results_dir / META).iterdir()) == ["claims", "lock"]


def test_recovery_removes_old_leftovers_but_not_fresh_ones(stored: Path, results_dir: Path):
    stale_tmp = stored.parent / ".tiny.json.abc.tmp"
    stale_tmp.write_text("partial")
    staging = results_dir / ".submit-xyz"
    staging.mkdir()
    fresh = stored.parent / ".tiny.run.gz.def.tmp"
    fresh.write_text("being written")
    past = time.time() - 3600
    for path in (stale_tmp, staging):
        os.utime(path, (past, past))
    uncommitted = results_dir / META / "txn-dead"
    uncommitted.mkdir(parents=True)
    (uncommitted / "0-tiny.json").write_text("half")
    ResultStore(results_dir)
    assert not stale_tmp.exists() and not staging.exists() and not uncommitted.exists()
    assert fresh.exists()  # may belong to a live writer
    read_result(stored)

"""Data-parallel CPU pre-training (training.processes): when it is chosen, that its workers see
the same held-out numbers as one process, that a kill -9 of the command takes its workers with it
and a resume lands on the uninterrupted run's weights, and that a worker's error is one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmark.catalog.registry import load_card
from benchmark.core.errors import MaebenchError
from benchmark.training.pretrain import pretrain_card
from benchmark.training.processes import (
    CPU_MICRO_POSITIONS,
    MIN_POSITIONS_FOR_WORKERS,
    micro_batches,
    resolve_processes,
)
from tests.helpers.cards import tiny_card
from tests.helpers.training import SMALL, die_after_a_save, options

NO_WARMUP = dict(SMALL, head_warmup_steps="0")  # the same weights at step 0 in any process count


def test_auto_picks_one_process_per_core_only_where_it_pays(monkeypatch) -> None:
    import benchmark.training.processes as processes

    monkeypatch.setattr(processes, "physical_cores", lambda: 2)
    long_run = MIN_POSITIONS_FOR_WORKERS
    assert resolve_processes(None, "cpu", True, long_run)[0] == 2
    assert resolve_processes(None, "cpu", True, long_run - 1)[0] == 1  # over before workers start
    assert resolve_processes(None, "cpu", False, long_run)[0] == 1  # in-batch negatives
    assert resolve_processes(None, "cuda", True, long_run)[0] == 1
    monkeypatch.setattr(processes, "physical_cores", lambda: 1)
    assert resolve_processes(None, "cpu", True, long_run)[0] == 1
    assert resolve_processes(3, "cpu", True, 10) == (3, "asked for")
    with pytest.raises(MaebenchError, match="in-batch negatives"):
        resolve_processes(2, "cpu", False, long_run)
    with pytest.raises(MaebenchError, match="accelerate launch"):
        resolve_processes(2, "cuda", True, long_run)


def test_micro_batches_cut_a_step_only_on_a_cpu_and_never_below_a_pair() -> None:
    assert micro_batches(None, "cpu", 4096, 128) == 4096 // CPU_MICRO_POSITIONS
    assert micro_batches(None, "cpu", CPU_MICRO_POSITIONS, 128) == 1
    assert micro_batches(None, "cuda", 8192, 128) == 1
    assert micro_batches(1000, "cuda", 8192, 128) == 9  # asked for: ceil(8192 / 1000)
    assert micro_batches(100, "cpu", 8192, 256) == 16  # each still holds a pair of 256-token spans
    with pytest.raises(MaebenchError, match="positive"):
        micro_batches(0, "cpu", 8192, 128)


@pytest.mark.slow
def test_micro_batches_train_record_and_resume(tiny_bert_dir, tmp_path, monkeypatch) -> None:
    """A step in two micro-batches (with the head warm-up): the card says so, tokens are the
    step's, a run stopped after a save resumes to the same weights, another cut is refused."""
    from benchmark.core.paths import checkpoints_dir

    init = tiny_card(tiny_bert_dir)
    kw = dict(objective="retromae", budget="4steps", micro_batch_positions=64)  # 4 x 32 = 128 per step
    whole = load_card(pretrain_card(init, options(tmp_path, "whole", **kw)))
    assert whole.pretraining.recipe["micro_batches"] == 2
    assert whole.pretraining.positions_seen <= 4 * 128 and whole.pretraining.tokens_seen > 4 * 64
    die_after_a_save(monkeypatch, lambda: pretrain_card(init, options(tmp_path, "cut", **kw)))
    assert (checkpoints_dir() / ".cut.partial" / "progress.json").is_file()
    with pytest.raises(MaebenchError, match="micro-batch"):
        pretrain_card(init, options(tmp_path, "cut", resume=True, **dict(kw, micro_batch_positions=128)))
    resumed = load_card(pretrain_card(init, options(tmp_path, "cut", resume=True, **kw)))
    assert resumed.pretraining.weights_sha256 == whole.pretraining.weights_sha256


def test_objectives_declare_whether_their_batch_splits() -> None:
    from benchmark.training.objectives import objective_class
    from benchmark.training.objectives.base import Objective

    assert not Objective.batch_separable  # a plug-in must say so to be split
    assert not objective_class("cocondenser").batch_separable
    for name in ("mlm", "retromae", "dupmae", "cotmae", "condenser", "bowpred", "simlm"):
        assert objective_class(name).batch_separable, name


def _log(name: str) -> dict:
    from benchmark.core.paths import checkpoints_dir

    return json.loads((checkpoints_dir() / name / "pretrain_log.json").read_text())


@pytest.mark.slow
def test_two_processes_train_resume_after_kill_9_and_match_one_on_heldout(tiny_bert_dir, tmp_path) -> None:
    from benchmark.core.paths import checkpoints_dir

    init = tiny_card(tiny_bert_dir)
    kw = dict(objective="bowpred", overrides=NO_WARMUP, holdout=0.3, evaluations=2, budget="6steps")
    one = load_card(pretrain_card(init, options(tmp_path, "one", processes=1, **kw)))
    two = load_card(pretrain_card(init, options(tmp_path, "two", processes=2, **kw)))
    assert two.pretraining.recipe["processes"] == 2 and one.pretraining.recipe["processes"] == 1
    # step 0: the same weights, batches and masks, dealt out over two processes
    for key, value in one.pretraining.heldout_start.items():
        assert two.pretraining.heldout_start[key] == pytest.approx(value, abs=2e-6), key
    assert two.pretraining.tokens_seen == _log("two")["tokens"] > 0
    # one learning-rate schedule step per optimizer step, whatever the process count
    assert _log("two")["lrs"] == _log("one")["lrs"] and len(set(_log("one")["lrs"])) > 2
    assert two.pretraining.cpu_time_s > 0 and len(_log("two")["losses"]) == 6

    # kill -9 of the command after its step-2 save: its workers die with it; a resume finishes
    # the run on the uninterrupted run's weights
    repo, folder, where = str(Path.cwd()), str(tiny_bert_dir), str(tmp_path)
    script = (f"import sys; from pathlib import Path; sys.path.insert(0, {repo!r})\n"
              "from tests.helpers.cards import tiny_card\n"
              "from tests.helpers.training import options\n"
              "from benchmark.training.pretrain import pretrain_card\n"
              f"pretrain_card(tiny_card(Path({folder!r})), options(Path({where!r}), 'two-killed', "
              f"processes=2, **{kw!r}))\n")
    proc = subprocess.Popen([sys.executable, "-c", script], env=dict(os.environ),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    progress = checkpoints_dir() / ".two-killed.partial" / "progress.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if json.loads(progress.read_text()).get("done", 0) >= 2:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before its first save"
    import psutil

    workers = psutil.Process(proc.pid).children()
    assert len(workers) == 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    gone, alive = psutil.wait_procs(workers, timeout=20)
    assert not alive, "a worker outlived the killed command"
    assert not (checkpoints_dir() / "two-killed").exists()
    with pytest.raises(MaebenchError, match="started in 2 training process"):
        pretrain_card(init, options(tmp_path, "two-killed", processes=1, resume=True, **kw))
    # --resume without --processes keeps the saved count
    resumed = load_card(pretrain_card(init, options(tmp_path, "two-killed", resume=True, **kw)))
    assert resumed.pretraining.weights_sha256 == two.pretraining.weights_sha256
    assert _log("two-killed")["losses"] == _log("two")["losses"]


@pytest.mark.slow
def test_a_workers_error_is_one_line_and_no_card(tiny_bert_dir, tmp_path) -> None:
    plugin = tmp_path / "broken.py"
    plugin.write_text(
        "from benchmark.training.objectives.mlm import MLM\n\n"
        "class Broken(MLM):\n"
        "    batch_separable = True\n\n"
        "    def forward(self, batch):\n"
        "        raise ValueError('this plug-in is broken')\n")
    with pytest.raises(MaebenchError) as caught:
        pretrain_card(tiny_card(tiny_bert_dir),
                      options(tmp_path, "broken", objective=f"{plugin}:Broken", processes=2))
    message = str(caught.value)
    assert "forward raised ValueError: this plug-in is broken" in message
    assert "\n" not in message
    assert not (tmp_path / "models" / "broken.yaml").exists()


def test_cli_refuses_processes_for_in_batch_negatives(tmp_path) -> None:
    cmd = [sys.executable, "-m", "benchmark.cli", "pretrain", "--objective", "cocondenser", "--init",
           "all-minilm-l6-v2", "--corpus", "scifact", "--budget", "10steps", "--name", "x",
           "--processes", "2", "--device", "cpu"]
    out = subprocess.run(cmd, capture_output=True, text=True, env={
        "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "MAEBENCH_HOME": str(tmp_path)})
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: --processes 2: this objective's loss compares examples across the whole batch "
        "(in-batch negatives), so splitting the batch over processes would change it; use "
        "--processes 1"]

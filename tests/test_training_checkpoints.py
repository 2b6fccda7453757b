"""Crash-safe training checkpoints (issue 19): a checkpoint folder counts only once committed,
and a resume skips an incomplete or damaged last checkpoint for the one before."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmark.training.checkpoints import (
    COMMIT_FILE,
    commit_checkpoint,
    committed,
    newest_committed,
    prune_checkpoints,
)


def _checkpoint(parent: Path, step: int, commit: bool = True) -> Path:
    folder = parent / f"checkpoint-{step}"
    (folder / "sub").mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * step)
    (folder / "sub" / "rng.pth").write_bytes(b"rng%d" % step)
    if commit:
        commit_checkpoint(folder, {"step": step})
    return folder


def test_a_committed_checkpoint_is_recognised_with_its_meta(tmp_path):
    folder = _checkpoint(tmp_path, 2)
    record = committed(folder)
    assert record["meta"] == {"step": 2}
    assert set(record["files"]) == {"trainer_state.json", "model.safetensors", "sub/rng.pth"}
    assert not list(folder.glob("*.maebench-tmp"))


@pytest.mark.parametrize("damage", ["zero-bytes", "missing", "flipped", "no-record", "bad-record",
                                    "record-list", "record-names-outside", "symlinked-file"])
def test_a_damaged_or_uncommitted_checkpoint_is_not_one(tmp_path, damage):
    folder = _checkpoint(tmp_path, 2, commit=damage != "no-record")
    state = folder / "trainer_state.json"
    if damage == "zero-bytes":  # what a kill -9 during the save left (issue 19)
        state.write_bytes(b"")
    elif damage == "missing":
        state.unlink()
    elif damage == "flipped":
        data = bytearray((folder / "model.safetensors").read_bytes())
        data[10] ^= 1
        (folder / "model.safetensors").write_bytes(bytes(data))
    elif damage == "bad-record":
        (folder / COMMIT_FILE).write_text("{")
    elif damage == "record-list":
        (folder / COMMIT_FILE).write_text("[]")
    elif damage == "record-names-outside":
        outside = tmp_path / "outside"
        outside.write_text("x")
        record = json.loads((folder / COMMIT_FILE).read_text())
        record["files"] = {"../outside": {"size": 1, "sha256": "0" * 64}}
        (folder / COMMIT_FILE).write_text(json.dumps(record))
    elif damage == "symlinked-file":
        target = tmp_path / "elsewhere.json"
        target.write_text(state.read_text())
        state.unlink()
        state.symlink_to(target)
    assert committed(folder) is None


def test_resume_skips_an_incomplete_last_checkpoint_for_the_one_before(tmp_path, caplog):
    _checkpoint(tmp_path, 2)
    _checkpoint(tmp_path, 4)
    torn = _checkpoint(tmp_path, 6, commit=False)
    (torn / "trainer_state.json").write_bytes(b"")
    damaged = _checkpoint(tmp_path, 8)
    (damaged / "model.safetensors").write_bytes(b"")
    folder, record = newest_committed(tmp_path, "checkpoint")
    assert folder.name == "checkpoint-4" and record["meta"] == {"step": 4}
    assert not torn.exists() and not damaged.exists()  # removed: the trainer rewrites them
    assert (tmp_path / "checkpoint-2").is_dir()
    assert "incomplete or damaged" in caplog.text
    assert newest_committed(tmp_path / "nothing-here", "checkpoint") is None


def test_prune_keeps_the_newest_committed_ones(tmp_path):
    for step in (2, 4, 6):
        _checkpoint(tmp_path, step)
    _checkpoint(tmp_path, 8, commit=False)
    prune_checkpoints(tmp_path, "checkpoint", keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-4", "checkpoint-6", "checkpoint-8"]


# --------------------------------------------------------------------------- wired into training


@pytest.mark.slow
def test_finetune_resumes_past_a_checkpoint_torn_during_its_save(tmp_path, monkeypatch):
    """A kill during the step-3 save (after the weights and optimizer, before the RNG state and
    trainer_state.json) leaves checkpoint-3 without its commit record; the re-run removes it,
    resumes from checkpoint-2 and ends with the uninterrupted run's weights."""
    import transformers

    from benchmark.catalog.registry import get_card, load_card
    from benchmark.training.finetune import run_finetune
    from tests.helpers.scifact import TINY, make_workspace

    workspace = make_workspace(tmp_path)
    data, models = workspace["data"], workspace["models"]
    monkeypatch.setenv("MAEBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MAEBENCH_MODELS_DIR", str(models))
    overrides = {**TINY, "save_steps": "1"}

    def finetune(name: str):
        return run_finetune(get_card("tiny-backbone", models), "scifact", "standard-cpu", 0, name,
                            overrides, data, "cpu", models_dir=models, progress=False)

    reference = load_card(finetune("whole").card_path).finetuning.record.weights_sha256
    original = transformers.Trainer._save_rng_state

    def killed_mid_save(self, output_dir):
        if self.state.global_step == 3:
            (Path(output_dir) / "trainer_state.json").write_bytes(b"")  # what issue 19 found
            raise KeyboardInterrupt("kill -9 during the step-3 save")
        return original(self, output_dir)

    monkeypatch.setattr(transformers.Trainer, "_save_rng_state", killed_mid_save)
    with pytest.raises(KeyboardInterrupt):
        finetune("torn")
    monkeypatch.setattr(transformers.Trainer, "_save_rng_state", original)
    stage = tmp_path / "home" / "checkpoints" / "torn.partial" / "stage1"
    assert committed(stage / "checkpoint-3") is None and committed(stage / "checkpoint-2")
    resumed = finetune("torn")
    assert load_card(resumed.card_path).finetuning.record.weights_sha256 == reference


@pytest.mark.slow
def test_pretrain_resume_skips_a_torn_last_state(tiny_bert_dir, tmp_path, monkeypatch):
    """A kill after the step-3 state was written but before it was committed (one of its files
    torn), and a damaged progress.json: --resume uses the step-2 state, same final weights."""
    import benchmark.training.pretrain as pretrain
    from benchmark.catalog.registry import load_card
    from benchmark.core.errors import MaebenchError
    from benchmark.core.paths import checkpoints_dir
    from tests.helpers.cards import tiny_card
    from tests.helpers.training import options

    monkeypatch.setenv("MAEBENCH_HOME", str(tmp_path / "home"))
    init = tiny_card(tiny_bert_dir)
    whole = load_card(pretrain.pretrain_card(init, options(tmp_path, "whole", budget="5steps",
                                                           save_every=1)))
    original = pretrain.commit_checkpoint

    def killed_before_commit(folder, meta=None):
        if Path(folder).name == "state-3":
            victim = next(p for p in sorted(Path(folder).rglob("*")) if p.is_file())
            victim.write_bytes(victim.read_bytes()[: len(victim.read_bytes()) // 2])
            raise KeyboardInterrupt("kill -9 before the state-3 commit")
        return original(folder, meta)

    monkeypatch.setattr(pretrain, "commit_checkpoint", killed_before_commit)
    with pytest.raises(KeyboardInterrupt):
        pretrain.pretrain_card(init, options(tmp_path, "torn", budget="5steps", save_every=1))
    monkeypatch.setattr(pretrain, "commit_checkpoint", original)
    staging = checkpoints_dir() / ".torn.partial"
    (staging / "progress.json").write_text("{")  # damaged too: no longer read for resuming
    with pytest.raises(MaebenchError, match="--resume"):
        pretrain.pretrain_card(init, options(tmp_path, "torn", budget="5steps", save_every=1))
    resumed = load_card(pretrain.pretrain_card(
        init, options(tmp_path, "torn", budget="5steps", save_every=1, resume=True)))
    assert resumed.pretraining.weights_sha256 == whole.pretraining.weights_sha256


@pytest.mark.slow
def test_a_real_kill_9_during_a_pretrain_save_resumes_to_the_same_weights(tmp_path):
    """One real SIGKILL at the instant a (seeded) random state folder appears, i.e. while it is
    being written, then --resume; bench/bench_kill_resume.py does this 10 times per job."""
    import importlib.util
    import random

    spec = importlib.util.spec_from_file_location(
        "bench_kill_resume", Path(__file__).parents[1] / "bench" / "bench_kill_resume.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    ws = bench.make_workspace(tmp_path / "ws")
    ref_models, models = tmp_path / "ref-models", tmp_path / "models"
    shutil.copytree(ws["models"], ref_models)
    shutil.copytree(ws["models"], models)
    code, _, _ = bench.run(bench.command("pretrain", ws, resume=False),
                           bench.environment(tmp_path / "ref-home", ref_models), None)
    assert code == 0
    env = bench.environment(tmp_path / "home", models)
    save = random.Random(19).randint(2, 6)
    code, _, _ = bench.run(bench.command("pretrain", ws, resume=False), env, ("save", save))
    assert code == -9 and bench.card_weights(models) is None
    code, _, _ = bench.run(bench.command("pretrain", ws, resume=True), env, None)
    assert code == 0
    assert bench.card_weights(models) == bench.card_weights(ref_models)


def test_a_pickle_in_a_saved_training_state_is_one_error_line(tiny_bert_dir, tmp_path, monkeypatch,
                                                                 capsys):
    """A saved optimizer state replaced by a pickle (with its commit record forged to match):
    `pretrain --resume` refuses it with one `error:` line (torch.load weights_only=True), and
    the pickle's payload never runs."""
    import pickle
    import sys

    import benchmark.training.pretrain as pretrain
    from benchmark import cli
    from benchmark.core.paths import checkpoints_dir
    from benchmark.training.pretrain import write_card
    from tests.helpers.cards import tiny_card
    from tests.helpers.training import die_after_a_save, options

    monkeypatch.setenv("MAEBENCH_HOME", str(tmp_path / "home"))
    models = tmp_path / "models"
    write_card(tiny_card(tiny_bert_dir), models, overwrite=False)
    monkeypatch.setenv("MAEBENCH_MODELS_DIR", str(models))
    die_after_a_save(monkeypatch, lambda: pretrain.pretrain_card(
        tiny_card(tiny_bert_dir), options(tmp_path, "pickled", save_every=2)))
    state = next((checkpoints_dir() / ".pickled.partial").glob("state-*"))
    sentinel = tmp_path / "sentinel"
    sentinel.write_text("x")
    optimizer = next(state.glob("optimizer*"))  # accelerate's optimizer.bin: a torch pickle
    optimizer.write_bytes(pickle.dumps(_Remove(str(sentinel))))
    commit_checkpoint(state, json.loads((state / COMMIT_FILE).read_text())["meta"])
    monkeypatch.setattr(sys, "argv", [
        "maebench", "pretrain", "--objective", "mlm", "--init", "tiny-init", "--corpus",
        options(tmp_path, "x").corpus, "--budget", "4steps", "--name", "pickled", "--set",
        "batch_size=4", "--set", "max_length=32", "--resume"])
    with pytest.raises(SystemExit) as info:
        cli.main()
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "pickle file" in errors[0]
    assert sentinel.exists()


class _Remove:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        import os

        return (os.remove, (self.path,))


def test_a_finetune_killed_before_writing_its_run_key_starts_afresh(tmp_path):
    """kill -9 between creating <name>.partial and writing its run key (bench_kill_resume's
    study job hit it): the re-run starts again instead of refusing the folder forever."""
    from benchmark.training.finetune import STATE_FILE, FinetuneError, _prepare_work_dir

    work = tmp_path / "x.partial"
    work.mkdir()
    _prepare_work_dir(work, {"seed": 0}, overwrite=False)
    assert json.loads((work / STATE_FILE).read_text()) == {"seed": 0}
    with pytest.raises(FinetuneError, match="other settings"):  # a real other run stays guarded
        _prepare_work_dir(work, {"seed": 1}, overwrite=False)

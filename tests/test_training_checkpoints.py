"""Crash-safe training checkpoints (issue 19): a checkpoint folder counts only once committed,
and a resume skips an incomplete or damaged last checkpoint for the one before."""

from __future__ import annotations

import json
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

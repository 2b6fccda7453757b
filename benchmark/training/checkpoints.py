"""Crash-safe training checkpoints: a checkpoint folder counts only once it is committed.

The trainers write a checkpoint's files one by one (transformers' Trainer for `finetune`:
weights, optimizer, scheduler, RNG state, trainer_state.json; accelerate's save_state for
`pretrain`), so a kill -9 during a save leaves a folder with a missing or 0-byte file, and
resuming from it crashed every later run (JSONDecodeError on trainer_state.json).

A save is therefore committed the way the stores commit (benchmark.results.store, benchmark.embeddings
.store): every file of the folder is fsynced, then a commit record naming each file with its
size and sha256 is written to a temporary file, fsynced and renamed to COMMIT_FILE, and the
folder is fsynced: that rename is the commit point. The trainers keep their own folder names
(checkpoint-N, state-N), rotation and resume logic; what changes is which folder a resume
starts from: the newest one whose commit record exists and whose files still match it. Newer
folders without one (a save killed midway) or that fail the check (damaged since) are removed
first, so the trainer never sees them and writes them afresh.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

COMMIT_FILE = "maebench-commit.json"
COMMIT_VERSION = 1
MAX_COMMIT_BYTES = 16 << 20


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _files(folder: Path) -> list[Path]:
    """Every regular file below `folder` (symlinks are not followed), the commit record and
    temporary files excluded, as paths relative to it."""
    found = []
    for top, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            path = Path(top) / name
            if name == COMMIT_FILE or name.endswith(".maebench-tmp") or path.is_symlink():
                continue
            found.append(path.relative_to(folder))
    return found


def _fsync(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit_checkpoint(folder: Path, meta: dict[str, Any] | None = None) -> None:
    """Commit a fully written checkpoint folder (see the module docstring); `meta` (JSON data,
    e.g. pre-training's progress) is stored in the record and returned by `committed`."""
    folder = Path(folder)
    files = {}
    for relative in _files(folder):
        path = folder / relative
        _fsync(path)
        files[relative.as_posix()] = {"size": path.stat().st_size, "sha256": _sha256(path)}
    for sub in sorted({Path(name).parent for name in files} | {Path(".")}):
        _fsync(folder / sub, directory=True)
    record = {"version": COMMIT_VERSION, "files": files, "meta": meta}
    tmp = folder / f"{COMMIT_FILE}.maebench-tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(record, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, folder / COMMIT_FILE)  # the commit point
    _fsync(folder, directory=True)


def committed(folder: Path) -> dict[str, Any] | None:
    """The commit record of `folder` when it is a complete checkpoint (every file it names is
    there with its size and sha256), else None. Never raises for a damaged folder."""
    from benchmark.core.errors import MaebenchError
    from benchmark.core.paths import confine, load_json_bounded

    folder = Path(folder)
    path = folder / COMMIT_FILE
    if folder.is_symlink() or not path.is_file():
        return None
    try:
        record = load_json_bounded(path, MAX_COMMIT_BYTES, "checkpoint commit record")
    except MaebenchError:
        return None
    if not isinstance(record, dict) or record.get("version") != COMMIT_VERSION:
        return None
    files = record.get("files")
    if not isinstance(files, dict) or not files:
        return None
    for name, expected in files.items():
        if not (isinstance(expected, dict) and type(expected.get("size")) is int
                and isinstance(expected.get("sha256"), str)):
            return None
        try:
            file = confine(folder, name, "checkpoint file")
            if file.is_symlink() or not file.is_file() or file.stat().st_size != expected["size"]:
                return None
            if _sha256(file) != expected["sha256"]:
                return None
        except (MaebenchError, OSError):
            return None
    return record


def _step(name: str, prefix: str) -> int | None:
    match = re.fullmatch(rf"{re.escape(prefix)}-(\d+)", name)
    return int(match.group(1)) if match else None


def _candidates(parent: Path, prefix: str) -> list[tuple[int, Path]]:
    if not parent.is_dir():
        return []
    found = [(_step(p.name, prefix), p) for p in parent.iterdir()]
    return sorted(((step, p) for step, p in found if step is not None), reverse=True)


def newest_committed(parent: Path, prefix: str) -> tuple[Path, dict[str, Any]] | None:
    """The newest `<prefix>-<N>` folder of `parent` that is committed and intact, with its
    commit record; the newer ones that are not (a save killed midway, a damaged file) are
    removed, with a warning. None when there is none (training starts from the beginning)."""
    for _, folder in _candidates(parent, prefix):
        record = committed(folder)
        if record is not None:
            return folder, record
        log.warning("%s is an incomplete or damaged checkpoint (a save was interrupted?); "
                    "removed, resuming from the one before", folder)
        _remove(folder)
    return None


def prune_checkpoints(parent: Path, prefix: str, keep: int = 2) -> None:
    """Remove all but the newest `keep` committed `<prefix>-<N>` folders (so a resume can fall
    back to the previous one if the newest turns out damaged); uncommitted ones are left to
    newest_committed."""
    kept = 0
    for _, folder in _candidates(parent, prefix):
        if committed(folder) is None:
            continue
        kept += 1
        if kept > keep:
            _remove(folder)


def _remove(folder: Path) -> None:
    if folder.is_symlink():
        folder.unlink()
    else:
        shutil.rmtree(folder, ignore_errors=True)


def CommitCheckpoints():  # noqa: N802 - a class built lazily (transformers is imported late)
    """A trainer callback that commits every checkpoint-N the Trainer has just saved (on_save
    runs after the whole save). In a multi-process run every process waits for the others to
    finish writing (their RNG files) before process 0 commits."""
    from transformers import TrainerCallback

    class _Commit(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            barrier()
            if state.is_world_process_zero:
                folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if folder.is_dir():
                    commit_checkpoint(folder)
            barrier()

    return _Commit()


def barrier() -> None:
    """Wait for every process of a torch.distributed run (nothing to wait for otherwise)."""
    try:
        import torch.distributed as dist
    except ImportError:
        return
    if dist.is_available() and dist.is_initialized():
        dist.barrier()

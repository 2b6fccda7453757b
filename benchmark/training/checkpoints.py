"""Crash-safe training checkpoints: a checkpoint folder counts only once it is committed.

The trainers write a checkpoint's files one by one (transformers' Trainer for `finetune`:
weights, optimizer, scheduler, RNG state, trainer_state.json; accelerate's save_state for
`pretrain`), so a kill -9 during a save leaves a folder with a missing or 0-byte file, and
resuming from it crashed every later run (JSONDecodeError on trainer_state.json).

A save is therefore committed the way the stores commit (benchmark.results.result_store, benchmark.embeddings
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
import math
import os
import re
import shutil
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from benchmark.core.errors import MaebenchError
from benchmark.core.validation import first_error

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


# --------------------------------------------------------------------------- hostile state
# (issue 27, class 5): the folders and records a training run resumes from are read like any
# other stored file: never through a symbolic link, validated before use, nothing removed
# unless the user asked to resume or to start again.


class TrainingStateError(MaebenchError):
    """A training run's staging folder, commit record or saved state cannot be used as it is."""


def real_folder(path: Path, what: str) -> None:
    """Refuse `path` when it is a symbolic link (or exists and is not a folder): a staging or
    weights folder that links out would make maebench write into, or delete, a folder outside
    its own (`pretrain` once emptied the link's target while looking for torn states)."""
    path = Path(path)
    if path.is_symlink():
        raise TrainingStateError(f"{path}: the {what} is a symbolic link; maebench never follows one out of "
                     "its folders (remove the link)")
    if path.exists() and not path.is_dir():
        raise TrainingStateError(f"{path}: the {what} is not a folder")


def open_staging(staging: Path, prefix: str, *, resume: bool, overwrite: bool, name: str) -> None:
    """Check a pre-training staging folder before anything reads or removes what is in it:
    never a link; with --overwrite (and no --resume) it is removed, a link only as a link;
    without --resume, leftovers of an unfinished run (any `<prefix>-N` folder, committed or
    torn) are refused, never pruned: only a resume may decide which of them to discard."""
    staging = Path(staging)
    if overwrite and not resume and staging.is_symlink():
        staging.unlink()  # the link itself, never its target
        return
    real_folder(staging, "staging folder")
    if overwrite and not resume:
        if staging.exists():
            shutil.rmtree(staging)
        return
    if not resume and _candidates(staging, prefix):
        raise TrainingStateError(f"an unfinished pre-training of '{name}' exists in {staging}; pass --resume "
                     "to continue it or --overwrite to start again")


def resume_meta(found: tuple[Path, dict[str, Any]] | None, steps: int) -> dict[str, Any] | None:
    """The progress stored in a committed pre-training state, validated against this run: the
    loop appends to `losses`, adds to `tokens` and starts at `done`, so a record whose types are
    wrong, whose `done` lies beyond the run's steps (the card would claim 300 steps on the
    weights of step 60) or whose losses are not one per done step is one line naming the
    commit record, never used. None when the record holds no progress (an older save)."""
    if found is None:
        return None
    folder, record = found
    meta = record.get("meta")
    if meta is None:
        return None
    try:
        progress = _PretrainProgress.model_validate(meta)
    except ValidationError as exc:
        raise TrainingStateError(f"{folder / COMMIT_FILE}: saved progress: {first_error(exc)}; "
                                 "pass --overwrite to start again") from None
    if progress.done > steps:
        raise TrainingStateError(f"{folder / COMMIT_FILE}: saved progress claims {progress.done} steps done "
                     f"of a {steps}-step run; pass --overwrite to start again")
    if len(progress.losses) != progress.done or len(progress.parts) != progress.done:
        raise TrainingStateError(f"{folder / COMMIT_FILE}: saved progress has {len(progress.losses)} losses "
                     f"for {progress.done} steps done; pass --overwrite to start again")
    if progress.head_warmup_done and len(progress.head_warmup_losses) not in (0, progress.head_warmup):
        raise TrainingStateError(
            f"{folder / COMMIT_FILE}: saved progress has {len(progress.head_warmup_losses)} head "
            f"warm-up losses for {progress.head_warmup} steps; pass --overwrite to start again")
    return meta


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


_Finite = Annotated[float, AfterValidator(_finite)]
_NonNegative = Annotated[float, Field(ge=0.0), AfterValidator(_finite)]


class _PretrainProgress(BaseModel):
    """What `pretrain` stores with each committed state (pretrain._Trainer._save): extra keys
    allowed (a newer loop may store more), the ones the loop reads strictly typed."""

    model_config = ConfigDict(extra="allow", strict=True)
    objective: str
    steps: int = Field(ge=1)
    done: int = Field(ge=0)
    losses: list[_Finite]
    parts: list[dict[str, _Finite]]
    tokens: int = Field(ge=0)
    wall_s: _NonNegative
    cpu_s: _NonNegative = 0.0
    head_warmup: int = Field(default=0, ge=0)
    head_warmup_done: bool = True
    head_warmup_losses: list[_Finite] = Field(default_factory=list)
    state: str | None = None


def load_training_state(accelerator, folder: Path) -> None:
    """accelerate's load_state, then a check that the random-number state was applied.

    load_state loads `random_states_<process>.pkl` with torch.load(weights_only=True) inside a
    `try: ... except Exception: logger.info("Could not load random states")`: a refused pickle,
    a missing or damaged file is swallowed, and the run resumes silently with the RNG of a fresh
    process, to different weights than the uninterrupted run. Here the same file is loaded with
    the same safe loader and compared with the state now in effect; any difference is one
    line naming the file."""
    import random

    import numpy as np
    import torch
    from accelerate.utils import RNG_STATE_NAME
    from accelerate.utils.other import load

    folder = Path(folder)
    accelerator.load_state(str(folder))
    rng_file = folder / f"{RNG_STATE_NAME}_{accelerator.process_index}.pkl"
    hint = "the run would resume without it, to other weights; pass --overwrite to start again"
    if rng_file.is_symlink() or not rng_file.is_file():
        raise TrainingStateError(f"{rng_file}: the saved random-number state is missing or not a "
                                 f"regular file; {hint}")
    try:
        states = load(str(rng_file))
    except Exception as exc:  # noqa: BLE001 - whatever torch.load refuses, accelerate swallowed
        raise TrainingStateError(f"{rng_file}: the saved random-number state cannot be loaded safely "
                     f"({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}); "
                     f"{hint}") from None
    try:
        applied = (isinstance(states, dict)
                   and random.getstate() == states["random_state"]
                   and torch.equal(torch.get_rng_state(), states["torch_manual_seed"])
                   and _same_numpy_state(np.random.get_state(), states["numpy_random_seed"]))
    except (KeyError, TypeError, ValueError, RuntimeError):
        applied = False
    if not applied:
        raise TrainingStateError(f"{rng_file}: the saved random-number state was not applied "
                                 f"(damaged?); {hint}")


def _same_numpy_state(current, saved) -> bool:
    import numpy as np

    if not isinstance(saved, tuple) or len(saved) != len(current):
        return False
    return all(np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b
               for a, b in zip(current, saved, strict=True))


def publish_folder(staged: Path, final: Path, *, replace: bool) -> None:
    """Rename a finished `staged` folder to `final` (a weights folder): an existing `final` is
    replaced only when `replace` (--overwrite / --resume), and a `final` that is a link is
    removed as a link, never followed (its target is not maebench's)."""
    final = Path(final)
    if final.is_symlink() or final.exists():
        if not replace:
            raise TrainingStateError(f"weights folder {final} exists; pass --overwrite to replace it")
        _remove(final)
    Path(staged).rename(final)


def clear_folder(path: Path) -> None:
    """Remove `path` if present: a link as a link (never its target), a folder with its files."""
    path = Path(path)
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def read_state_json(path: Path, what: str) -> Any | None:
    """A small JSON state file of a training run (finetune's run key, a stage's stats): None
    when it is absent or not valid JSON (the run is then redone or refused by the caller); a
    FIFO, device or link is one line at once, never opened for reading (a FIFO as the run key
    made `finetune` wait forever)."""
    from benchmark.core.files import read_regular_text

    path = Path(path)
    real_folder(path.parent, "training work folder")
    if not (path.is_symlink() or path.exists()):
        return None
    if path.is_symlink():
        raise TrainingStateError(f"{path}: {what} is a symbolic link; remove it (or pass --overwrite)")
    text = read_regular_text(path, MAX_COMMIT_BYTES, what)
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return None


def _no_constant(name: str):
    raise ValueError(f"non-finite number {name}")


# --------------------------------------------------------------------------- name claims


def claim_checkpoint_names(owner: str, names: dict[str, str]) -> None:
    """Claim weights folders (checkpoints_dir()/<name>) for `owner` (e.g. a study id) before
    anything is trained into them: `names` maps each folder name to what it holds ("arm
    'b-x' pre-training"). Study card names are `<study>-<arm>-...`, and ids and arms may both
    contain '-', so study 'ra' arm 'b-x' and study 'ra-b' arm 'x' both name 'ra-b-x-pt': the
    second replaced the first's weights while its card still pinned the old sha256. A name
    claimed by another owner is refused in one line; the claim is a small marker file under
    checkpoints_dir()/.claims, created exclusively (O_EXCL), so two runs cannot both win it.
    The committed cards keep their names (they are already published)."""
    from benchmark.core.paths import checkpoints_dir

    root = checkpoints_dir() / ".claims"
    real_folder(root, "claims folder")
    root.mkdir(parents=True, exist_ok=True)
    # every name is checked before any is claimed: a refused study leaves no claim behind
    for name, role in names.items():
        _check_claim(root / f"{name}.json", owner, role, name)
    for name, role in names.items():
        marker = root / f"{name}.json"
        record = json.dumps({"owner": owner, "role": role}, sort_keys=True).encode()
        try:
            fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                         0o644)
        except FileExistsError:
            _check_claim(marker, owner, role, name)  # claimed meanwhile, or ours already
            continue
        try:
            os.write(fd, record)
            os.fsync(fd)
        finally:
            os.close(fd)


def _check_claim(marker: Path, owner: str, role: str, name: str) -> None:
    """Refuse `name` when its claim marker names another owner (nothing to do when absent)."""
    from benchmark.core.paths import checkpoints_dir

    if not (marker.is_symlink() or marker.exists()):
        return
    held = _claim_of(marker)
    if held["owner"] != owner:
        raise TrainingStateError(
            f"checkpoint folder {checkpoints_dir() / name} belongs to {held['owner']} "
            f"({held.get('role')}); {owner} ({role}) would replace its weights: rename the study "
            f"or the arm (claim: {marker})")


def _claim_of(marker: Path) -> dict[str, Any]:
    from benchmark.core.files import read_regular_text

    if marker.is_symlink():
        raise TrainingStateError(f"{marker}: a checkpoint claim is a symbolic link; remove it")
    text = read_regular_text(marker, 1 << 16, "checkpoint claim")
    try:
        held = json.loads(text)
    except ValueError:
        held = None
    if not isinstance(held, dict) or not isinstance(held.get("owner"), str):
        raise TrainingStateError(f"{marker}: a damaged checkpoint claim (remove it if no other study trains "
                     "into that folder)")
    return held

"""ResultStore: the only owner and writer of the results/ tree.

Layout (unchanged, so git history, the site and bundles keep working):
results/<model>/<task>.json beside results/<model>/<task>.run.gz, and the store's own
bookkeeping under results/.maebench/ (git-ignored): `lock`, `claims/`, `txn-*/`.

Why a journal: a result is two files (the JSON names its run file's sha256), and two renames
cannot be one atomic step. A write therefore stages every new file (fsynced) inside
results/.maebench/txn-<id>/, writes the journal (the list of staged -> final renames) and then
atomically renames it to COMMIT: that rename is the commit point. Before it, the final files
were never touched (recovery deletes the transaction); after it, recovery rolls forward,
repeating the renames that had not happened yet (each rename is atomic and idempotent). So
a kill -9 at any instant leaves either the old or the new result once the store is next
opened, never a JSON next to another run's file; and `read` checks the run file's sha256, so a
mix could never be consumed silently even before recovery.

A journal names files relative to their trees (version 2: `{"staged", "tree", "final"}`), and
recovery trusts none of it: every path goes through benchmark.paths.confine (staged files
directly in their transaction folder, final files at results/<model>/<file> or models/<card>,
no symlink out of either). A journal that fails any check, or is not JSON of that shape, is
moved to results/.maebench/quarantine/ with a warning and never applied.

Locks are `flock`s, released by the kernel when a process dies (no stale lock files):
- `lock`: held while a transaction is staged, committed or recovered;
- `claims/<model>--<task>.lock`: held by a run from its start to its commit, so a second
  concurrent run of the same result is refused at once instead of replacing the first.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from benchmark.errors import ResultError

log = logging.getLogger(__name__)


class JournalError(ResultError):
    """A journal under results/.maebench/ that this store did not write (or that was damaged)."""

META = ".maebench"
TXN_PREFIX = "txn-"
MODELS_TXN_PREFIX = ".maebench-txn-"
COMMIT = "COMMIT"
QUARANTINE = "quarantine"  # journals that failed their checks, moved aside (never applied)
JOURNAL_VERSION = 2  # {"version", "renames": [{staged, tree, final}], "models_dir"}
MAX_JOURNAL_BYTES = 1 << 20
# temp files of results.atomic_write and staging folders of the submit code before the store;
# removed on open once they are older than this (a live writer finishes in seconds)
LEGACY_LEFTOVER_AGE_S = 600


def _step(name: str) -> None:
    """Crash-injection point for tests (they replace this to kill the process at `name`)."""


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _io_error(what: str, exc: OSError) -> ResultError:
    reason = exc.strerror or type(exc).__name__
    if exc.errno == errno.ENOSPC:
        reason = "no space left on device"
    return ResultError(f"{what}: {reason}")


class ResultStore:
    """results/ as a small transactional database of (model, task) results."""

    def __init__(self, root: Path, models_dir: Path | None = None, recover: bool = True) -> None:
        self.root = Path(root)
        self.models_dir = Path(models_dir) if models_dir is not None else None
        if self.root.exists() and not self.root.is_dir():
            raise ResultError(f"{self.root}: results folder is not a folder")
        if recover:
            self.recover()

    # ------------------------------------------------------------------ layout
    @property
    def meta(self) -> Path:
        return self.root / META

    def path(self, model: str, task: str) -> Path:
        from benchmark.results import result_path

        return result_path(self.root, model, task)

    def exists(self, model: str, task: str) -> bool:
        return self.path(model, task).exists()

    # ------------------------------------------------------------------ reading
    def read(self, model: str, task: str):
        from benchmark.results import read_result

        return read_result(self.path(model, task))

    def results(self):
        """Every stored result, each read and hash-checked (list of (path, Result))."""
        from benchmark.results import iter_results

        return iter_results(self.root)

    # ------------------------------------------------------------------ locks
    def check_writable(self) -> None:
        """Fail in a second, with one line, when results/ cannot be written (a file in the way,
        read-only, no space), instead of after an hour of encoding."""
        try:
            (self.meta / "claims").mkdir(parents=True, exist_ok=True)
            probe = self.meta / f"probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            with open(probe, "wb") as handle:
                handle.write(b"ok")
                handle.flush()
                os.fsync(handle.fileno())
            probe.unlink()
        except OSError as exc:
            raise _io_error(f"{self.root}: results folder is not writable", exc) from exc

    @contextlib.contextmanager
    def _flock(self, path: Path, blocking: bool, busy: str) -> Iterator[None]:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise _io_error(f"{path}: cannot take the results lock", exc) from exc
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError as exc:
                raise ResultError(busy) from exc
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            yield
        finally:
            os.close(fd)  # releases the flock

    def _lock(self) -> contextlib.AbstractContextManager[None]:
        return self._flock(self.meta / "lock", True, "results/ is locked")

    @contextlib.contextmanager
    def claim(self, model: str, task: str, overwrite: bool) -> Iterator[Path]:
        """Hold (model, task) for one run: refused at once when another process holds it or
        when the result exists and `overwrite` was not asked. Yields the result's path."""
        target = self.path(model, task)
        busy = (
            f"{target} is being computed by another maebench process right now; wait for it "
            "to finish (then pass --overwrite to redo it)"
        )
        with self._flock(self.meta / "claims" / f"{model}--{task}.lock", False, busy):
            if target.exists() and not overwrite:
                raise ResultError(f"{target} already exists; pass --overwrite to replace it")
            yield target

    # ------------------------------------------------------------------ writing
    def write(self, result, run_bytes: bytes | None, overwrite: bool = False) -> Path:
        """Store one result (and its run file) atomically; refuses an existing result unless
        `overwrite`, checked again under the lock (a concurrent writer cannot slip in)."""
        from benchmark.results import dump_result, run_path, with_eval_key

        result = with_eval_key(result)
        target = self.path(result.model.name, result.task.name)
        files = [(run_path(target), run_bytes)] if run_bytes is not None else []
        files.append((target, dump_result(result)))
        self.commit(files, must_not_exist=[] if overwrite else [target])
        return target

    def commit(self, files: list[tuple[Path, bytes]], must_not_exist: list[Path] = ()) -> list[Path]:
        """One transaction: every (final path, bytes) is written, or none is. Final paths must
        lie in results/ or in the store's models folder. Run files go before the JSONs so a
        reader of an unrecovered tree sees a hash mismatch rather than a dangling name."""
        finals = [Path(p) for p, _ in files]
        for final in finals:
            self._check_inside(final)
        with self._lock():
            self._recover_locked()
            for path in must_not_exist:
                if path.exists():
                    raise ResultError(f"{path} already exists; pass --overwrite to replace it")
            txn_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
            txn = self.meta / f"{TXN_PREFIX}{txn_id}"
            side = self.models_dir / f"{MODELS_TXN_PREFIX}{txn_id}" if self.models_dir else None
            try:
                txn.mkdir(parents=True)
                renames = []
                for index, (final, data) in enumerate(files):
                    in_models = side is not None and self._in_models(final)
                    folder = side if in_models else txn
                    folder.mkdir(parents=True, exist_ok=True)
                    staged = folder / f"{index}-{final.name}"
                    with open(staged, "wb") as handle:
                        handle.write(data)
                        handle.flush()
                        os.fsync(handle.fileno())
                    os.chmod(staged, 0o644)
                    tree, base = ("models", self.models_dir) if in_models else ("results", self.root)
                    renames.append({"staged": staged.name, "tree": tree,
                                    "final": os.path.relpath(final.resolve(), base.resolve())})
                _step("staged")
                journal = txn / "journal.tmp"
                journal.write_text(json.dumps({
                    "version": JOURNAL_VERSION, "renames": renames,
                    "models_dir": str(self.models_dir.resolve()) if side else None,
                }))
                with open(journal, "rb+") as handle:
                    os.fsync(handle.fileno())
                _step("journal-written")
            except OSError as exc:
                self._discard(txn, side)
                raise _io_error(f"{self.root}: cannot write the result", exc) from exc
            except BaseException:
                self._discard(txn, side)
                raise
            os.replace(journal, txn / COMMIT)  # the commit point
            _fsync_dir(txn)
            _step("committed")
            self._roll_forward(txn)
        return finals

    def _in_models(self, path: Path) -> bool:
        return self.models_dir is not None and path.resolve().parent == self.models_dir.resolve()

    def _check_inside(self, path: Path) -> None:
        """The rule recovery checks every journal against (_confine_final / _confine_model)."""
        try:
            if self._in_models(path):
                self._confine_model(self.models_dir, str(path.resolve()))
            else:
                self._confine_final(str(path.resolve()))
        except JournalError as exc:
            raise ResultError(f"{path}: the result store writes only inside {self.root} ({exc})") from exc

    # ------------------------------------------------------------------ recovery
    def recover(self) -> None:
        """Finish or undo interrupted transactions and remove leftovers. Skipped (the tree is
        left as is) when another process holds the lock or results/ cannot be written."""
        if not self.meta.is_dir() and not self._legacy_leftovers():
            return
        try:
            fd = os.open(self.meta / "lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError:
            return  # read-only tree: readers still verify hashes
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # a live writer is mid-transaction
            self._recover_locked()
        finally:
            os.close(fd)

    def _recover_locked(self) -> None:
        if self.meta.is_dir():
            for txn in sorted(self.meta.glob(f"{TXN_PREFIX}*")):
                if txn.is_symlink() or not txn.is_dir():
                    self._quarantine(txn, "not a transaction folder (a symlink or a file)")
                elif (txn / COMMIT).exists() or (txn / COMMIT).is_symlink():
                    self._roll_forward(txn)
                else:
                    self._discard(txn, self._side_of(txn))
            for probe in self.meta.glob("probe-*"):
                probe.unlink(missing_ok=True)
        if self.models_dir is not None and self.models_dir.is_dir():
            for side in self.models_dir.glob(f"{MODELS_TXN_PREFIX}*"):
                if not (self.meta / f"{TXN_PREFIX}{side.name[len(MODELS_TXN_PREFIX):]}").exists():
                    shutil.rmtree(side, ignore_errors=True)
        for leftover in self._legacy_leftovers():
            if time.time() - leftover.lstat().st_mtime > LEGACY_LEFTOVER_AGE_S:
                if leftover.is_dir():
                    shutil.rmtree(leftover, ignore_errors=True)
                else:
                    leftover.unlink(missing_ok=True)

    def _side_of(self, txn: Path) -> Path | None:
        if self.models_dir is None:
            return None
        return self.models_dir / f"{MODELS_TXN_PREFIX}{txn.name[len(TXN_PREFIX):]}"

    def _legacy_leftovers(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.glob(".submit-*") if p.is_dir()]
        found += [p for p in self.root.glob("*/.*.tmp") if p.is_file()]
        if self.models_dir is not None and self.models_dir.is_dir():
            found += [p for p in self.models_dir.glob(".submit-*") if p.is_dir()]
        return found

    def _roll_forward(self, txn: Path) -> None:
        """Repeat the journal's renames that have not happened yet, then drop the transaction.
        The journal is checked whole first (see _plan): one that is not a journal this store
        wrote (not JSON, another shape, a path outside results/ or models/, or a link out of
        them) is moved aside to .maebench/quarantine/ with a warning, and nothing is renamed."""
        try:
            plan, side = self._plan(txn)
        except JournalError as exc:
            self._quarantine(txn, str(exc))
            return
        for index, (staged, final) in enumerate(plan):
            if staged.is_file() and not staged.is_symlink():
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, final)
                _fsync_dir(final.parent)
            _step(f"renamed-{index}")
        if side is not None:
            shutil.rmtree(side, ignore_errors=True)
        shutil.rmtree(txn, ignore_errors=True)

    def _plan(self, txn: Path) -> tuple[list[tuple[Path, Path]], Path | None]:
        """The (staged, final) renames of `txn`'s journal, every path confined to its tree by
        benchmark.paths.confine: a staged file inside the transaction folder (or its side folder
        in models/), a final file inside results/ (never in .maebench/) or directly in models/.
        Version 1 journals (absolute paths) are read with the same checks."""
        from benchmark.paths import confine, load_json_bounded

        confine(self.root, f"{META}/{txn.name}", "transaction folder", error=JournalError)
        data = load_json_bounded(txn / COMMIT, MAX_JOURNAL_BYTES, "journal", error=JournalError)
        if not isinstance(data, dict) or not isinstance(data.get("renames"), list):
            raise JournalError(f"{txn / COMMIT}: not a journal (an object with a list of renames)")
        txn_id = txn.name[len(TXN_PREFIX):]
        if data.get("version") == JOURNAL_VERSION:
            models = data.get("models_dir")
            side = self._checked_side(Path(models) / f"{MODELS_TXN_PREFIX}{txn_id}", txn) \
                if isinstance(models, str) and Path(models).is_absolute() else None
            plan = []
            for item in data["renames"]:
                if not isinstance(item, dict) or not all(
                    isinstance(item.get(k), str) for k in ("staged", "tree", "final")
                ) or item["tree"] not in ("results", "models"):
                    raise JournalError(f"{txn / COMMIT}: a rename is not {{staged, tree, final}}")
                if item["tree"] == "results":
                    plan.append((self._confine_staged(txn, item["staged"]),
                                 self._confine_final(item["final"])))
                elif side is not None and side.is_dir():
                    plan.append((self._confine_staged(side, item["staged"]),
                                 self._confine_model(side.parent, item["final"])))
                elif side is None:
                    raise JournalError(f"{txn / COMMIT}: a models/ rename without models_dir")
                # else: the side folder is gone, so its renames all happened (it goes last)
            return plan, side
        if "version" in data or not (data.get("side") is None or isinstance(data["side"], str)):
            raise JournalError(f"{txn / COMMIT}: unknown journal version")
        # version 1: [[absolute staged, absolute final], ...] and the side folder's path
        side = self._checked_side(Path(data["side"]), txn) if data.get("side") else None
        plan = []
        for item in data["renames"]:
            if not (isinstance(item, list) and len(item) == 2 and all(isinstance(s, str) for s in item)):
                raise JournalError(f"{txn / COMMIT}: a rename is not a [staged, final] pair")
            staged, final = item
            if side is not None and Path(staged).parent == side:
                if side.is_dir():
                    plan.append((self._confine_staged(side, staged),
                                 self._confine_model(side.parent, final)))
                continue
            plan.append((self._confine_staged(txn, staged), self._confine_final(final)))
        return plan, side

    def _checked_side(self, side: Path, txn: Path) -> Path:
        """A side folder (staged cards in models/) named after its transaction, in the store's
        models folder when it has one; a real folder when it exists (not a symlink)."""
        if not side.is_absolute() or side.name != f"{MODELS_TXN_PREFIX}{txn.name[len(TXN_PREFIX):]}":
            raise JournalError(f"{txn / COMMIT}: side folder {str(side)!r} is not this transaction's")
        if self.models_dir is not None and os.path.realpath(side.parent) != os.path.realpath(self.models_dir):
            raise JournalError(f"{txn / COMMIT}: side folder {str(side)!r} is not in {self.models_dir}")
        if side.is_symlink() or (side.exists() and not side.is_dir()):
            raise JournalError(f"{txn / COMMIT}: side folder {str(side)!r} is not a folder")
        return side

    @staticmethod
    def _confine_staged(folder: Path, name: str) -> Path:
        from benchmark.paths import confine

        path = confine(folder, name, "staged file", error=JournalError)
        if path.parent != folder and os.path.realpath(path.parent) != os.path.realpath(folder):
            raise JournalError(f"{folder}: staged file {name!r} is not directly in its transaction")
        return path

    def _confine_final(self, name: str) -> Path:
        from benchmark.paths import confine

        path = confine(self.root, name, "result file", error=JournalError)
        relative = Path(os.path.realpath(path)).relative_to(os.path.realpath(self.root))
        if relative.parts[0] == META or len(relative.parts) != 2:
            raise JournalError(f"{self.root}: {name!r} is not a results/<model>/<file> path")
        return path

    @staticmethod
    def _confine_model(models: Path, name: str) -> Path:
        from benchmark.paths import confine

        path = confine(models, name, "card file", error=JournalError)
        if os.path.realpath(path.parent) != os.path.realpath(models) or not name.endswith(".yaml"):
            raise JournalError(f"{models}: {name!r} is not a card file directly in models/")
        return path

    def _quarantine(self, txn: Path, reason: str) -> None:
        """Move a transaction that cannot be trusted out of the way (kept for inspection),
        and say so: every later command would otherwise trip over it again."""
        target = self.meta / QUARANTINE / txn.name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.exists():
                target = target.with_name(f"{txn.name}-{uuid.uuid4().hex[:8]}")
            os.replace(txn, target)
        except OSError:
            target = None
        where = f"moved to {target}" if target else "left in place (cannot move it)"
        log.warning("results store: transaction %s not applied: %s; %s", txn.name, reason, where)

    @staticmethod
    def _discard(txn: Path, side: Path | None) -> None:
        shutil.rmtree(txn, ignore_errors=True)
        if side is not None:
            shutil.rmtree(side, ignore_errors=True)


def open_store(root: Path, models_dir: Path | None = None) -> ResultStore:
    return ResultStore(root, models_dir)

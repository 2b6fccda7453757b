"""ResultStore: the only owner and writer of the results/ tree, and the only code that knows
its paths and file formats (result JSON here, run files in benchmark.results.runfiles).

Layout (unchanged, so git history, the site and bundles keep working):
results/<model>/<task>.json beside results/<model>/<task>.run.gz, and the store's own
bookkeeping under results/.maebench/ (git-ignored): `lock`, `claims/`, `txn-*/`. Reading
(read_result, read_run, iter_results) checks the run file's sha256 and the stored EvalKey
against the result's own fields.

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
recovery trusts none of it: every path goes through benchmark.core.paths.confine (staged files
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
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from benchmark.core.errors import ResultError
from benchmark.core.paths import check_name, confine, load_json_bounded, read_bounded
from benchmark.evaluation.metrics import RankedList
from benchmark.results.identity import EvalKey
from benchmark.results.runfiles import decode_run, sha256_bytes
from benchmark.results.schema import Result, parse_result, with_eval_key

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
        return result_path(self.root, model, task)

    def exists(self, model: str, task: str) -> bool:
        return self.path(model, task).exists()

    # ------------------------------------------------------------------ reading
    def read(self, model: str, task: str):
        return read_result(self.path(model, task))

    def results(self):
        """Every stored result, each read and hash-checked (list of (path, Result))."""
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
        benchmark.core.paths.confine: a staged file inside the transaction folder (or its side folder
        in models/), a final file inside results/ (never in .maebench/) or directly in models/.
        Version 1 journals (absolute paths) are read with the same checks."""
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
        path = confine(folder, name, "staged file", error=JournalError)
        if path.parent != folder and os.path.realpath(path.parent) != os.path.realpath(folder):
            raise JournalError(f"{folder}: staged file {name!r} is not directly in its transaction")
        return path

    def _confine_final(self, name: str) -> Path:
        path = confine(self.root, name, "result file", error=JournalError)
        relative = Path(os.path.realpath(path)).relative_to(os.path.realpath(self.root))
        if relative.parts[0] == META or len(relative.parts) != 2:
            raise JournalError(f"{self.root}: {name!r} is not a results/<model>/<file> path")
        return path

    @staticmethod
    def _confine_model(models: Path, name: str) -> Path:
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


# results/ sub-folders that hold other data, never a model's results: published numbers
# (benchmark.results.reported), reproduction specs and reports (benchmark.reproduction) and
# studies' own results (benchmark.studies). Named here, so the tree has one map.
REPORTED_DIR, REPRODUCTIONS_DIR, STUDIES_DIR = "reported", "reproductions", "studies"
RESERVED_DIRS = frozenset({REPORTED_DIR, REPRODUCTIONS_DIR, STUDIES_DIR})


def _root(results_dir: Path | None) -> Path:
    from benchmark.core.paths import results_dir as default_results_dir

    return results_dir if results_dir is not None else default_results_dir()


def reported_dir(results_dir: Path | None = None) -> Path:
    """results/reported/: one YAML file of published numbers per source."""
    return _root(results_dir) / REPORTED_DIR


def reproductions_dir(results_dir: Path | None = None) -> Path:
    """results/reproductions/: reproduction reports, with their specs in specs/."""
    return _root(results_dir) / REPRODUCTIONS_DIR


def studies_dir(results_dir: Path | None = None) -> Path:
    """results/studies/: each study's report (<id>.json) and its own results tree (<id>/)."""
    return _root(results_dir) / STUDIES_DIR


def stored_models(results_dir: Path) -> list[str]:
    """The models with at least one stored result (sub-folders that are not models skipped)."""
    if not results_dir.is_dir():
        return []
    return sorted(p.name for p in results_dir.iterdir()
                  if p.is_dir() and p.name not in RESERVED_DIRS and not p.name.startswith(".")
                  and any(p.glob("*.json")))


def stored_tasks(results_dir: Path, model: str) -> list[str]:
    """The tasks `model` has a stored result for."""
    return sorted(p.name.removesuffix(".json") for p in (results_dir / model).glob("*.json")
                  if not p.name.startswith("."))


def stored_runs(results_dir: Path, task: str) -> dict[str, Path]:
    """model -> the run file stored for `task`, for every model that has one."""
    return {p.parent.name: p for p in sorted(results_dir.glob(f"*/{task}.run.gz"))
            if p.parent.name not in RESERVED_DIRS and not p.parent.name.startswith(".")}


def result_path(results_dir: Path, model: str, task: str) -> Path:
    for name in (model, task):
        check_name(name, "name", ResultError)
    if model in RESERVED_DIRS:
        raise ResultError(f"'{model}' is reserved in results/ and cannot name a model")
    return results_dir / model / f"{task}.json"


def run_path(json_path: Path) -> Path:
    return json_path.with_name(json_path.name.removesuffix(".json") + ".run.gz")


def dump_result(result: Result) -> bytes:
    return (json.dumps(result.model_dump(mode="json"), indent=1, sort_keys=True) + "\n").encode()


def write_result(
    results_dir: Path,
    result: Result,
    run_bytes: bytes | None,
    overwrite: bool = False,
) -> Path:
    """Store a result and its run file through the ResultStore (one transaction)."""
    return ResultStore(results_dir).write(result, run_bytes, overwrite=overwrite)


MAX_RESULT_BYTES = 256 << 20


MAX_RUN_FILE_BYTES = 2 << 30  # gzip of MS MARCO dev at depth 1000 is ~100 MB


def read_result(path: Path, verify_run: bool = True) -> Result:
    """Read and validate a stored result; with `verify_run`, its run file must exist and have
    the sha256 the JSON names (a JSON next to another run's file is an error, never used)."""
    data = read_bounded(path, MAX_RESULT_BYTES, "result JSON", error=ResultError)  # no FIFO hang
    try:
        raw = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ResultError(f"{path}: cannot read result JSON ({type(exc).__name__})") from exc
    result = parse_result(raw, str(path))
    if result.eval_key is not None:
        recomputed = EvalKey.of(result)
        differs = result.eval_key.differences(recomputed, with_config=False)
        if differs:
            raise ResultError(f"{path}: field eval_key: its {differs[0]} differ from the result's own")
    if verify_run and result.run is not None:
        file = path.parent / result.run.file
        if file.name != run_path(path).name:
            raise ResultError(f"{path}: field run.file: must be '{run_path(path).name}'")
        try:
            digest = _sha256_file(file)
        except OSError as exc:
            raise ResultError(f"{file}: cannot read run file ({exc.strerror})") from exc
        if digest != result.run.sha256:
            raise ResultError(
                f"{file}: sha256 does not match {path.name}'s run.sha256 (an interrupted write? "
                "run any maebench command to let the store recover, else re-run the result)"
            )
    return result


def _no_constant(name: str) -> float:
    raise ValueError(f"non-finite number {name}")


def _sha256_file(path: Path) -> str:
    """The sha256 of a regular file (a FIFO or a device raises OSError instead of blocking or
    never ending)."""
    import stat

    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_run(path: Path, result: Result) -> dict[str, RankedList]:
    """Load a result's run file, checking it is the one the result was computed from."""
    if result.run is None:
        raise ResultError(f"{path}: this result has no run file")
    file = path.parent / result.run.file
    data = read_bounded(file, MAX_RUN_FILE_BYTES, "run file", error=ResultError)
    if sha256_bytes(data) != result.run.sha256:
        raise ResultError(f"{file}: sha256 does not match the result's run.sha256")
    return decode_run(data, str(file))


def iter_results(results_dir: Path) -> list[tuple[Path, Result]]:
    """Every stored result (results/reported/ and results/reproductions/ are skipped)."""
    found = []
    if not results_dir.is_dir():
        return found
    ResultStore(results_dir)  # finishes or undoes an interrupted write first
    for path in sorted(results_dir.glob("*/*.json")):
        folder = path.parent.name
        if folder in RESERVED_DIRS or folder.startswith(".") or path.name.startswith("."):
            continue  # papers' numbers, reproduction reports, a submission being staged
        found.append((path, read_result(path)))
    return found

"""The embedding store: one folder per key, fixed shards, a manifest that is the only truth.

Layout: <root>/<digest[:32]>/ with key.json (every key field, for `maebench store ls`),
manifest.json and shard-NNNNNN.npy. A shard is committed in four steps, each safe to die in:

1. the vectors are written to a temporary file beside the shard,
2. that file is fsynced and renamed to shard-NNNNNN.npy,
3. a new manifest naming the shard with its sha256 is written to a temporary file,
4. that file is renamed over manifest.json.

Dying before 4 leaves the old manifest, which does not name the shard: the next run encodes
it again (at most the shard in flight is lost) and overwrites the file. A shard is only read
back after its bytes match the manifest's sha256, so a corrupt, truncated or foreign file is
dropped from the manifest and re-encoded, never used.

A shard still being encoded is checkpointed in parts (benchmark.retrievers.dense): its
texts in encoding order (longest first) cut into parts of `part_rows` rows, each committed the
same four steps as part-SSSSSS-KKKK.npy (fp32, in that order) and recorded under the
manifest's "parts" with the batch size that formed it. A run interrupted mid-shard therefore
keeps every finished part, and the next one encodes only the rest, in the same batches, so the
shard it writes is byte-identical to an uninterrupted run's. Writing the shard forgets and
deletes its parts. A manifest without "parts" (written before parts existed) reads as having
none, and its shards are used as before.

Nothing a manifest says is trusted beyond that: a record must name its own shard's file
(shard-NNNNNN.npy for shard N, confined to the entry by benchmark.core.paths.confine, read as a
regular file no larger than the shard can be), so a swapped, absolute or `../` record, or an
ill-typed one, is left out and that shard encoded again; a manifest of another shape counts as
empty. Entries are real folders named by their id: `store rm` takes id prefixes only (never a
path or a glob) and never follows a symlink, not even to create its lock file.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import logging
import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark.core.errors import MaebenchError
from benchmark.core.paths import confine, load_json_bounded, read_bounded
from benchmark.embeddings.key import StoreKey

MANIFEST = "manifest.json"
KEY_FILE = "key.json"
LOCK_FILE = ".lock"


log = logging.getLogger(__name__)

MAX_MANIFEST_BYTES = 16 << 20  # 88 shards for MS MARCO take 20 KB
MAX_DIM = 1 << 20
NPY_HEADER_MAX = 4096
HEX = frozenset("0123456789abcdef")
ENTRY_ID = re.compile(r"[0-9a-f]{32}")
ID_PREFIX = re.compile(r"[0-9a-f]{1,32}")


class StoreError(MaebenchError):
    """The embedding store cannot be used as asked (locked entry, unknown key, ...)."""


def shard_file(index: int) -> str:
    """The one file name shard `index` may have; a manifest record naming any other is damaged."""
    return f"shard-{index:06d}.npy"


def part_file(index: int, part: int) -> str:
    """The one file name part `part` of shard `index` may have (same rule as shard_file)."""
    return f"part-{index:06d}-{part:04d}.npy"


MAX_PARTS = 10_000  # part numbers have four digits


def _open_lock(folder: Path):
    """The entry's lock file, created if missing, never through a symlink (O_NOFOLLOW)."""
    try:
        fd = os.open(folder / LOCK_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise StoreError(f"{folder / LOCK_FILE}: cannot open the entry's lock "
                         f"({exc.strerror or type(exc).__name__})") from exc
    return os.fdopen(fd, "a")


def _check_entry_folder(folder: Path) -> None:
    """An entry is a folder of the store itself, not a symlink (in or out of it)."""
    confine(folder.parent, folder.name, "embedding store entry", error=StoreError)
    if folder.is_symlink():
        raise StoreError(f"{folder}: an embedding store entry is a symlink; remove it by hand")


def _tree_size(folder: Path) -> int:
    """Bytes of the regular files below `folder`, without following symlinks."""
    total = 0
    for top, _dirs, files in os.walk(folder):  # followlinks=False
        for name in files:
            try:
                info = os.lstat(os.path.join(top, name))
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
    return total


def _atomic_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary name in the same folder, fsync, rename (steps 1-2 / 3-4 above)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)  # never write through a symlink left under that name
    with tmp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def shard_bytes(vectors: np.ndarray, dtype: str) -> bytes:
    """The .npy bytes of one shard in the stored dtype (deterministic for equal vectors)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(vectors, dtype=np.dtype(dtype)), allow_pickle=False)
    return buffer.getvalue()


@dataclass(frozen=True)
class ShardRecord:
    file: str
    rows: int
    sha256: str


class Entry:
    """One key's shards. Open it with `EmbeddingStore.entry`; writes need `with entry.writing():`."""

    def __init__(self, folder: Path, key: StoreKey, n_rows: int, n_shards: int) -> None:
        self.folder = folder
        self.key = key
        self.n_rows = n_rows
        self.n_shards = n_shards
        self._lock_handle = None
        self.shards: dict[int, ShardRecord] = {}
        self.dim: int | None = None
        self.dropped: list[int] = []  # shards found corrupt and dropped in this session
        # checkpoint parts of unfinished shards: how they were cut, and each shard's records
        self.part_rows: int | None = None
        self.part_batch: int | None = None
        self.parts: dict[int, list[ShardRecord]] = {}
        self._warned: set[str] = set()
        self._load_manifest()

    # -- manifest ----------------------------------------------------------------------------
    def _load_manifest(self) -> None:
        """The manifest's records, each checked: a manifest that is not this key's, or not a
        manifest at all, counts as empty; a record that names another file than its shard's
        own (swapped, absolute, `../`), or is ill-typed, is left out, so that shard is encoded
        again. Only records that pass are ever read (and then their sha256 is checked too)."""
        self.shards = {}
        self.dim = None
        self.part_rows = self.part_batch = None
        self.parts = {}
        path = self.folder / MANIFEST
        if not path.is_file():
            return
        self._check_folder()
        try:
            data = load_json_bounded(path, MAX_MANIFEST_BYTES, "embedding store manifest",
                                     error=StoreError)
        except StoreError as exc:
            self._warn(f"{exc}; its shards are encoded again")
            return
        if not isinstance(data, dict) or (data.get("key"), data.get("rows"), data.get("shards_total")) != (
            self.key.digest(), self.n_rows, self.n_shards
        ):
            return  # a manifest for something else: start afresh, its shards are overwritten
        dim, shards = data.get("dim"), data.get("shards")
        if not isinstance(shards, dict) or not (
            dim is None or (type(dim) is int and 0 < dim <= MAX_DIM)
        ):
            self._warn(f"{path}: not a manifest of this store; its shards are encoded again")
            return
        self.dim = dim
        for index_text, raw in shards.items():
            record = self._record(index_text, raw)
            if record is None:
                self._warn(f"{path}: shard record {index_text!r} is damaged; that shard is encoded again")
                continue
            self.shards[int(index_text)] = record
        self._load_parts(data.get("parts"))

    def _load_parts(self, raw: object) -> None:
        """The parts section, checked like the shard records: a layout of positive ints, and for
        each unfinished shard a list of records naming exactly its own part files, each of
        `part_rows` rows. Anything else is left out (those parts are encoded again)."""
        if raw is None:
            return
        layout_ok = isinstance(raw, dict) and set(raw) == {"batch_size", "part_rows", "shards"}
        if layout_ok:
            batch, rows, shards = raw["batch_size"], raw["part_rows"], raw["shards"]
            layout_ok = (type(batch) is int and type(rows) is int and 0 < batch <= rows
                         and rows % batch == 0 and rows <= self.n_rows
                         and isinstance(shards, dict))
        if not layout_ok:
            self._warn(f"{self.folder / MANIFEST}: its parts section is damaged; unfinished "
                       "shards are encoded again from their start")
            return
        self.part_batch, self.part_rows = batch, rows
        for index_text, records in shards.items():
            if not (isinstance(index_text, str) and index_text.isdigit()
                    and 0 <= int(index_text) < self.n_shards and isinstance(records, list)
                    and len(records) < MAX_PARTS):
                continue
            index = int(index_text)
            kept: list[ShardRecord] = []
            for number, record in enumerate(records):  # a damaged part ends the usable prefix
                checked = self._part_record(index, number, record)
                if checked is None:
                    break
                kept.append(checked)
            if kept and index not in self.shards:
                self.parts[index] = kept

    def _part_record(self, index: int, number: int, raw: object) -> ShardRecord | None:
        if not (isinstance(raw, dict) and set(raw) == {"file", "rows", "sha256"}):
            return None
        file, rows, sha256 = raw["file"], raw["rows"], raw["sha256"]
        if file != part_file(index, number) or rows != self.part_rows or type(rows) is not int:
            return None
        if not (isinstance(sha256, str) and len(sha256) == 64 and all(c in HEX for c in sha256)):
            return None
        return ShardRecord(file=file, rows=rows, sha256=sha256)

    def _warn(self, message: str) -> None:
        if message not in self._warned:  # the manifest is read again when the lock is taken
            self._warned.add(message)
            log.warning("%s", message)

    def _record(self, index_text: str, raw: object) -> ShardRecord | None:
        if not (isinstance(index_text, str) and index_text.isdigit() and isinstance(raw, dict)):
            return None
        index = int(index_text)
        if set(raw) != {"file", "rows", "sha256"} or not 0 <= index < self.n_shards:
            return None
        file, rows, sha256 = raw["file"], raw["rows"], raw["sha256"]
        if file != shard_file(index) or type(rows) is not int or not 0 < rows <= self.n_rows:
            return None  # a record names exactly its own shard's file, nothing else
        if not (isinstance(sha256, str) and len(sha256) == 64 and all(c in HEX for c in sha256)):
            return None
        return ShardRecord(file=file, rows=rows, sha256=sha256)

    def _check_folder(self) -> None:
        _check_entry_folder(self.folder)

    def _write_manifest(self) -> None:
        data = {
            "key": self.key.digest(),
            "rows": self.n_rows,
            "shards_total": self.n_shards,
            "dim": self.dim,
            "dtype": self.key.store_dtype,
            "shards": {str(i): vars(rec) for i, rec in sorted(self.shards.items())},
        }
        if self.parts and self.part_rows is not None:
            data["parts"] = {
                "batch_size": self.part_batch, "part_rows": self.part_rows,
                "shards": {str(i): [vars(r) for r in records]
                           for i, records in sorted(self.parts.items())},
            }
        _atomic_bytes(self.folder / MANIFEST, json.dumps(data, indent=1).encode("utf-8"))

    # -- state -------------------------------------------------------------------------------
    @property
    def complete(self) -> bool:
        return len(self.shards) == self.n_shards

    def missing(self) -> list[int]:
        return [i for i in range(self.n_shards) if i not in self.shards]

    def nbytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.glob("shard-*.npy"))

    # -- writing -----------------------------------------------------------------------------
    def writing(self) -> Entry:
        return self

    def __enter__(self) -> Entry:
        """Hold the entry's lock: two runs filling the same entry would waste work and race on
        the manifest, so the second one is refused with a clear message."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._check_folder()
        handle = _open_lock(self.folder)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.close()
            raise StoreError(
                f"another process is writing embedding store entry {self.folder}; wait for it"
            ) from exc
        self._lock_handle = handle
        key_file = self.folder / KEY_FILE
        if not key_file.is_file():
            _atomic_bytes(key_file, self.key.model_dump_json(indent=1).encode("utf-8"))
        for stale in self.folder.glob(".*.tmp"):  # a crash in step 1 or 3 left these
            stale.unlink(missing_ok=True)
        self._load_manifest()  # the truth as of taking the lock
        recorded = {r.file for records in self.parts.values() for r in records}
        for orphan in self.folder.glob("part-*.npy"):  # of a finished shard, or never recorded
            if orphan.name not in recorded and not orphan.is_symlink():
                orphan.unlink(missing_ok=True)
        return self

    def __exit__(self, *exc_info) -> None:
        if self._lock_handle is not None:
            fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None

    def write(self, index: int, vectors: np.ndarray) -> ShardRecord:
        """Commit shard `index` (steps 1-4); needs the lock."""
        if self._lock_handle is None:
            raise RuntimeError("Entry.write outside `with entry.writing():`")
        if vectors.ndim != 2:
            raise ValueError("a shard is a 2-d array")
        data = shard_bytes(vectors, self.key.store_dtype)
        record = ShardRecord(
            file=shard_file(index), rows=len(vectors), sha256=hashlib.sha256(data).hexdigest()
        )
        _atomic_bytes(self.folder / record.file, data)
        self.dim = int(vectors.shape[1])
        self.shards[index] = record
        finished_parts = self.parts.pop(index, [])
        self._write_manifest()
        leftovers = {self.folder / part.file for part in finished_parts}
        leftovers |= set(self.folder.glob(f"part-{index:06d}-*.npy"))  # dropped ones too
        for path in leftovers:  # after the manifest no longer names them
            if not path.is_symlink():
                path.unlink(missing_ok=True)
        return record

    # -- checkpoint parts of an unfinished shard -----------------------------------------------
    def part_layout(self, batch_size: int, default_rows: int | None) -> int | None:
        """The part size this run must cut shards at: the recorded one when the parts on disk
        were formed with the same batch size (their batches are then this run's), else none
        yet (`default_rows`, or None to let the first part's close decide). Parts formed with
        another batch size are forgotten: their vectors came from other batches."""
        if self.part_batch is not None and self.part_batch != batch_size:
            self.parts = {}
            self.part_rows = self.part_batch = None
            if self._lock_handle is not None:
                self._write_manifest()
        if self.part_rows is None and default_rows is not None:
            self.part_rows, self.part_batch = default_rows, batch_size
        return self.part_rows

    def set_part_rows(self, rows: int, batch_size: int) -> None:
        """Fix the part size (a multiple of the batch size) for every shard of this entry."""
        if rows <= 0 or rows % batch_size:
            raise ValueError("a part is a whole number of batches")
        self.part_rows, self.part_batch = rows, batch_size

    def write_part(self, index: int, vectors: np.ndarray) -> ShardRecord:
        """Commit the next part of unfinished shard `index` (steps 1-4, in fp32); needs the lock."""
        if self._lock_handle is None:
            raise RuntimeError("Entry.write_part outside `with entry.writing():`")
        if vectors.ndim != 2 or len(vectors) != self.part_rows:
            raise ValueError("a part is a 2-d array of part_rows rows")
        records = self.parts.setdefault(index, [])
        data = shard_bytes(vectors, "float32")
        record = ShardRecord(file=part_file(index, len(records)), rows=len(vectors),
                             sha256=hashlib.sha256(data).hexdigest())
        _atomic_bytes(self.folder / record.file, data)
        self.dim = int(vectors.shape[1])
        records.append(record)
        self._write_manifest()
        return record

    def load_parts(self, index: int) -> list[np.ndarray]:
        """The finished parts of shard `index`, in order, each checked like a shard (its own
        file, its sha256, its shape); the first that fails and every later one are forgotten."""
        records = self.parts.get(index, [])
        limit = (self.part_rows or 0) * (self.dim or 0) * 4 + NPY_HEADER_MAX
        vectors: list[np.ndarray] = []
        for number, record in enumerate(records):
            try:
                path = confine(self.folder, part_file(index, number), "part file", error=StoreError)
                data = read_bounded(path, limit, "part file", error=StoreError)
                if hashlib.sha256(data).hexdigest() != record.sha256:
                    raise ValueError("sha256")
                array = np.load(io.BytesIO(data), allow_pickle=False)
                if array.shape != (self.part_rows, self.dim) or array.dtype != np.float32:
                    raise ValueError("shape")
            except (StoreError, ValueError):
                self.parts[index] = records[:number]
                if not self.parts[index]:
                    del self.parts[index]
                if self._lock_handle is not None:
                    self._write_manifest()
                break
            vectors.append(array)
        return vectors

    def stored_rows(self) -> int:
        """Rows whose vectors are kept: finished shards plus the finished parts of the others."""
        return (sum(r.rows for r in self.shards.values())
                + sum(r.rows for records in self.parts.values() for r in records))

    def drop(self, index: int) -> None:
        """Forget a shard (corrupt or foreign) so that it is encoded again."""
        self.shards.pop(index, None)
        self.dropped.append(index)
        if self._lock_handle is not None:
            self._write_manifest()

    # -- reading -----------------------------------------------------------------------------
    def load(self, index: int, expected_rows: int) -> np.ndarray | None:
        """Shard `index` as fp32, or None when it is not recorded or fails its checks (then
        it is dropped from the manifest and must be encoded again)."""
        record = self.shards.get(index)
        if record is None:
            return None
        itemsize = np.dtype(self.key.store_dtype).itemsize
        limit = expected_rows * (self.dim or 0) * itemsize + NPY_HEADER_MAX
        try:  # its own file only, inside the entry, a regular file of the size it must have
            path = confine(self.folder, shard_file(index), "shard file", error=StoreError)
            data = read_bounded(path, limit, "shard file", error=StoreError)
        except StoreError:
            data = b""
        if hashlib.sha256(data).hexdigest() != record.sha256 or record.rows != expected_rows:
            self.drop(index)
            return None
        try:
            vectors = np.load(io.BytesIO(data), allow_pickle=False)
        except ValueError:
            self.drop(index)
            return None
        if vectors.shape != (expected_rows, self.dim) or vectors.dtype != np.dtype(
            self.key.store_dtype
        ):
            self.drop(index)
            return None
        return vectors.astype(np.float32, copy=False)


class EmbeddingStore:
    """The folder of entries ($MAEBENCH_HOME/embeddings unless told otherwise)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def entry(self, key: StoreKey, n_rows: int, n_shards: int) -> Entry:
        return Entry(self.root / key.digest()[:32], key, n_rows, n_shards)

    def entries(self) -> list[EntryInfo]:
        return [EntryInfo.read(folder) for folder in self._folders()]

    def _folders(self) -> list[Path]:
        """The entry folders: real folders directly in the root named like an entry id
        (symlinks and anything else are not entries, and are never listed or removed)."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir()
                      if ENTRY_ID.fullmatch(p.name) and p.is_dir() and not p.is_symlink())

    def find(self, prefix: str) -> list[Path]:
        """Entries whose id starts with `prefix`, which must itself look like an id (hex): a
        path such as `../x` or `/tmp` is refused, never globbed or resolved."""
        if not ID_PREFIX.fullmatch(prefix or ""):
            raise StoreError(f"{prefix!r} is not an entry id (hex digits, see `maebench store ls`)")
        return [p for p in self._folders() if p.name.startswith(prefix)]

    def remove(self, folder: Path) -> int:
        """Delete one entry folder (refused while a run holds its lock); returns bytes freed.
        Only a real entry folder directly inside the store: nothing is created or touched
        outside it (the lock file is opened without following a symlink)."""
        folder = Path(folder)
        if folder.parent != self.root or folder not in self._folders():
            raise StoreError(f"{folder} is not an entry of the embedding store {self.root}")
        _check_entry_folder(folder)
        with _open_lock(folder) as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                raise StoreError(f"{folder} is being written by a running process") from exc
            size = _tree_size(folder)
            shutil.rmtree(folder)
        return size


@dataclass
class EntryInfo:
    """What `maebench store ls` shows about one entry (read without trusting it)."""

    folder: Path
    key: dict
    shards_done: int
    shards_total: int | None
    rows: int | None
    nbytes: int

    @classmethod
    def read(cls, folder: Path) -> EntryInfo:
        def load(name: str) -> dict:
            try:
                path = confine(folder, name, name, error=StoreError)
                data = load_json_bounded(path, MAX_MANIFEST_BYTES, name, error=StoreError)
            except StoreError:
                return {}
            return data if isinstance(data, dict) else {}

        def number(value: object) -> int | None:
            return value if type(value) is int and value >= 0 else None

        manifest = load(MANIFEST)
        shards = manifest.get("shards")
        return cls(
            folder=folder,
            key=load(KEY_FILE),
            shards_done=len(shards) if isinstance(shards, dict) else 0,
            shards_total=number(manifest.get("shards_total")),
            rows=number(manifest.get("rows")),
            nbytes=_tree_size(folder),
        )

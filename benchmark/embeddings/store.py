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
        self._write_manifest()
        return record

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

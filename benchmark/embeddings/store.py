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
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark.embeddings.key import StoreKey
from benchmark.errors import MaebenchError

MANIFEST = "manifest.json"
KEY_FILE = "key.json"
LOCK_FILE = ".lock"


class StoreError(MaebenchError):
    """The embedding store cannot be used as asked (locked entry, unknown key, ...)."""


def _atomic_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary name in the same folder, fsync, rename (steps 1-2 / 3-4 above)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
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
        self._load_manifest()

    # -- manifest ----------------------------------------------------------------------------
    def _load_manifest(self) -> None:
        path = self.folder / MANIFEST
        if not path.is_file():
            return
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if (data["key"], data["rows"], data["shards_total"]) != (
                self.key.digest(), self.n_rows, self.n_shards
            ):
                return  # a manifest for something else: start afresh, its shards are overwritten
            self.dim = data.get("dim")
            self.shards = {int(i): ShardRecord(**rec) for i, rec in data["shards"].items()}
        except (OSError, ValueError, KeyError, TypeError):
            self.shards = {}  # unreadable manifest: nothing in it can be trusted

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
        handle = (self.folder / LOCK_FILE).open("a")
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
            file=f"shard-{index:06d}.npy", rows=len(vectors), sha256=hashlib.sha256(data).hexdigest()
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
        try:
            data = (self.folder / record.file).read_bytes()
        except OSError:
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
        if not self.root.is_dir():
            return []
        found = []
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
            found.append(EntryInfo.read(folder))
        return found

    def find(self, prefix: str) -> list[Path]:
        return [p for p in sorted(self.root.glob(f"{prefix}*")) if p.is_dir()] if prefix else []

    def remove(self, folder: Path) -> int:
        """Delete one entry folder (refused while a run holds its lock); returns bytes freed."""
        with (folder / LOCK_FILE).open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                raise StoreError(f"{folder} is being written by a running process") from exc
            size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
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
                data = json.loads((folder / name).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return {}
            return data if isinstance(data, dict) else {}

        manifest = load(MANIFEST)
        size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
        return cls(
            folder=folder,
            key=load(KEY_FILE),
            shards_done=len(manifest.get("shards", {})),
            shards_total=manifest.get("shards_total"),
            rows=manifest.get("rows"),
            nbytes=size,
        )

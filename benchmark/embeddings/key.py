"""The identity of a set of vectors: every field that changes a vector is part of the key.

Two runs share an entry exactly when they would compute the same vectors: the same weights
(checkpoint + revision from the hub, or the sha256 of every file of a local checkpoint, so a
retrained folder at the same path gets a new key), the same encoder kind, pooling, head,
normalisation, prefix, title mode, max length, model dtype and stored dtype, the same inference
backend (torch and OpenVINO vectors differ at ~1e-7, so their bytes are not the same entry, though
their evaluations are: the backend is not part of benchmark.results.identity), the same role (query and
passage never share an entry, even for identical texts: mteb PR #5379) and the same texts (the
corpus fingerprint). FEVER / Climate-FEVER or MS MARCO / DL19 / DL20, whose corpus
files are identical, therefore share one passage encoding.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

STORE_FORMAT = 1


class StoreKey(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: int = STORE_FORMAT
    role: Literal["query", "passage"]
    weights: str  # "hub:<id>@<revision>" or "sha256:<digest of the local folder>"
    encoder: str
    pooling: str
    head: tuple[str, ...]
    normalize: bool
    similarity: str  # cosine without normalised encodings is normalised before storing
    prefix: str
    title: str  # title mode (passages) or "n/a" (queries)
    title_separator: str
    max_length: int
    model_dtype: str
    store_dtype: Literal["float32", "float16"]
    dupmae: tuple[float | None, int | None] = (None, None)
    texts: str  # sha256 fingerprint of the texts (corpus file, or queries file + chosen ids)
    shard_rows: int  # batches are formed within a shard, so the sharding is part of identity
    backend: Literal["torch", "openvino"] = "torch"  # what computed the vectors

    def digest(self) -> str:
        fields = self.model_dump(mode="json")
        if fields["backend"] == "torch":
            # entries written before the backend existed were all torch: they keep their digest
            del fields["backend"]
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def folder_digest(folder: Path, cache_file: Path | None = None) -> str:
    """sha256 over every file of a checkpoint folder (relative path + bytes, sorted): weights,
    config and tokenizer all change vectors. Cached by (path, size, mtime) of each file in
    `cache_file`, so a warm run does not re-hash hundreds of MB."""
    # .cache inside the folder (HF local_dir metadata), not in its own path: ~/.cache/... holds
    # maebench's trained checkpoints, and every one of them hashed to the empty digest
    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and ".cache" not in p.relative_to(folder).parts
    )
    signature = hashlib.sha256()
    for p in files:
        st = p.stat()
        signature.update(f"{p.relative_to(folder)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    signature_hex = f"{folder.resolve()}|{signature.hexdigest()}"
    cache = _read_cache(cache_file)
    if signature_hex in cache:
        return cache[signature_hex]
    digest = hashlib.sha256()
    for p in files:
        digest.update(str(p.relative_to(folder)).encode("utf-8") + b"\0")
        with p.open("rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
    value = digest.hexdigest()
    if cache_file is not None:
        cache[signature_hex] = value
        _write_cache(cache_file, cache)
    return value


def _read_cache(cache_file: Path | None) -> dict[str, str]:
    if cache_file is None or not cache_file.is_file():
        return {}
    try:
        data = json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}  # a damaged cache only costs a re-hash
    return data if isinstance(data, dict) else {}


def _write_cache(cache_file: Path, cache: dict[str, str]) -> None:
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_name(f".{cache_file.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(cache, indent=0, sort_keys=True), encoding="utf-8")
    os.replace(tmp, cache_file)


def texts_fingerprint(file_sha256: str, chosen_ids: list[str] | None = None) -> str:
    """The corpus file's sha256 as is; for queries, also which ids (in which order) were taken."""
    if chosen_ids is None:
        return file_sha256
    digest = hashlib.sha256(file_sha256.encode())
    for qid in chosen_ids:
        digest.update(b"\0" + qid.encode("utf-8"))
    return digest.hexdigest()

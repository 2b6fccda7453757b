"""The OpenVINO conversion cache on disk: where a converted encoder lives, what it is keyed by,
and how an entry is checked, published and cleaned, never trusting what is found there.

$MAEBENCH_HOME/openvino/models/<key>/ holds model.xml, model.bin and meta.json (sha256 of both
files, parity numbers, conversion seconds), or meta.json alone with the reason a conversion
failed. The key covers the weights identity (hub id + revision, or the sha256 of every file of
a local checkpoint), everything of the card that is inside the graph (encoder kind, role for
separate encoders, pooling, head, normalisation, DupMAE settings, dtype) and the converter
(openvino, torch and transformers versions, and CONVERTER_FORMAT). A folder is written under a
temporary name and renamed into place, and read only after both files match meta.json's
sha256: a truncated or damaged model is rebuilt, never used.

Its own module, importing neither torch nor openvino: the backend policy asks it, on every
`auto` run, whether a conversion already failed (recorded_failure), which must stay cheap.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from benchmark.core.files import sha256_file

if TYPE_CHECKING:
    from benchmark.catalog.registry import DenseConfig
    from benchmark.retrievers.backends.torch_backend import Role

CONVERTER_FORMAT = 1  # bump when the converted graph changes for the same inputs


def cache_root() -> Path:
    """$MAEBENCH_HOME/openvino: converted models, compiled blobs and calibrations live under it."""
    from benchmark.core.paths import home_dir

    return home_dir() / "openvino"


def converter_versions() -> dict[str, str | None]:
    """The versions that make the converter: another one may trace another graph."""
    found: dict[str, str | None] = {}
    for name in ("openvino", "torch", "transformers"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def conversion_key(weights: str, config: DenseConfig, role: Role) -> dict:
    """Everything that changes the converted graph (see the module docstring)."""
    return {
        "format": CONVERTER_FORMAT,
        "weights": weights,
        "encoder": config.encoder,
        "role": role if config.encoder == "separate" else "any",
        "pooling": config.pooling,
        "head": list(config.head),
        "normalize": config.normalize,
        "dupmae": [config.dupmae_sparse_weight, config.dupmae_sparse_top_k],
        "dtype": config.dtype,
        "versions": converter_versions(),
    }


def key_digest(key: dict) -> str:
    """sha256 of a conversion key: its first 32 digits name the entry's folder, all 64 are in
    meta.json, so an entry is only ever read as the key it was written for."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def model_folder(weights: str, config: DenseConfig, role: Role) -> Path:
    """Where this encoder's conversion is (or would be) cached."""
    return cache_root() / "models" / key_digest(conversion_key(weights, config, role))[:32]


META_LIMIT = 1 << 20  # bytes: meta.json is ~2 KB; a larger one is not ours


def _meta_model():
    """meta.json's schema (issue 27): built on first use, so importing this module stays light.
    Every field the backend reads is typed; sha256 digests are 64 hex digits; an entry is a
    model (`files` names exactly model.xml and model.bin) or a recorded failure, never both."""
    import math

    from pydantic import BaseModel, ConfigDict, Field, model_validator

    sha256 = Field(pattern=r"^[0-9a-f]{64}$")

    class Parity(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        passed: bool
        reason: str | None = Field(default=None, max_length=2000)
        max_abs_diff_normalised: float | None = None
        max_rel_diff_norm: float | None = None
        tolerance: float | None = None
        texts: int | None = Field(default=None, ge=0)

    class Meta(BaseModel):
        model_config = ConfigDict(extra="forbid", strict=True)
        digest: str = sha256
        key: dict
        created: str = Field(max_length=64)
        files: dict[str, str] | None = None
        failure: str | None = Field(default=None, min_length=1, max_length=2000)
        parity: Parity | None = None
        conversion_seconds: float | None = Field(default=None, ge=0, le=1e7)

        @model_validator(mode="after")
        def _one_kind(self):
            if (self.files is None) == (self.failure is None):
                raise ValueError("an entry holds either files or a failure")
            if self.files is not None:
                if set(self.files) != {"model.xml", "model.bin"}:
                    raise ValueError("files must name model.xml and model.bin")
                if not all(len(v) == 64 and all(c in "0123456789abcdef" for c in v)
                           for v in self.files.values()):
                    raise ValueError("files' digests must be sha256")
            for value in (self.conversion_seconds, *(
                    (self.parity.max_abs_diff_normalised, self.parity.max_rel_diff_norm,
                     self.parity.tolerance) if self.parity else ())):
                if value is not None and not math.isfinite(value):
                    raise ValueError("numbers must be finite")
            if key_digest(self.key) != self.digest:
                raise ValueError("the digest does not match the key")
            return self

    return Meta


def entry_kind(path: Path) -> str:
    """'missing', 'dir', 'file' or 'other' (a link, FIFO, socket, device), without following
    links or opening anything: a FIFO opened for reading waits for a writer forever."""
    import stat

    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return "missing"
    except OSError:  # ENOTDIR: a parent is not a folder; EACCES
        return "other"
    if stat.S_ISDIR(mode):
        return "dir"
    return "file" if stat.S_ISREG(mode) else "other"


def remove_entry(path: Path) -> None:
    """Remove a cache entry or temporary folder, whatever it is, without opening it:
    shutil.rmtree opens its argument to list it, which blocks on a FIFO and follows nothing
    useful on a link, so only a real folder is handed to it."""
    kind = entry_kind(path)
    if kind == "dir":
        shutil.rmtree(path, ignore_errors=True)
    elif kind != "missing":
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def read_meta(folder: Path, digest: str) -> dict | None:
    """The entry's validated meta.json, or None when the entry is missing or damaged: not a
    real folder (a link, a FIFO), meta.json not a regular file, too large, not JSON, wrong
    types (issue 27: a list as `files` or `failure`), or another key's. Never blocks."""
    from benchmark.core.errors import MaebenchError
    from benchmark.core.paths import read_bounded

    if entry_kind(folder) != "dir" or entry_kind(folder / "meta.json") != "file":
        return None
    try:
        raw = json.loads(read_bounded(folder / "meta.json", META_LIMIT, "meta.json"))
        meta = _meta_model().model_validate(raw)
    except (MaebenchError, ValueError, RecursionError):  # pydantic's ValidationError included
        return None
    if meta.digest != digest:
        return None
    return meta.model_dump(exclude_none=True)


def recorded_failure(weights: str, config: DenseConfig, role: Role) -> str | None:
    """Why this encoder did not convert (or failed parity) with this converter, if it was tried
    before: cheap (one small file), so the backend choice needs no conversion to know it."""
    key = conversion_key(weights, config, role)
    digest = key_digest(key)
    meta = read_meta(model_folder(weights, config, role), digest)
    if meta is not None and meta.get("failure"):
        return meta["failure"]
    from benchmark.retrievers.backends.calibration import calibration_reason, stored_calibration

    record = stored_calibration(digest, config, role)
    if record is not None and record["choice"] == "torch":
        return calibration_reason(record)
    return None


def damage(folder: Path, meta: dict) -> str | None:
    """What is wrong with a cached model's files (None: both match meta.json's sha256)."""
    for name, expected in (meta.get("files") or {}).items():
        path = folder / name
        kind = entry_kind(path)
        if kind != "file":
            return f"{name} is missing" if kind == "missing" else f"{name} is not a regular file"
        if sha256_file(path) != expected:
            return f"{name} does not match its sha256"
    if set(meta.get("files") or {}) != {"model.xml", "model.bin"}:
        return "meta.json lists the wrong files"
    return None


def publish(tmp: Path, folder: Path) -> None:
    """Rename a finished temporary folder into place (atomic: a reader sees all or nothing). If
    another process published first, keep its copy when it is sound, else replace it."""
    digest = json.loads((tmp / "meta.json").read_text(encoding="utf-8"))["digest"]
    for _ in range(3):  # a concurrent writer may publish between our rmtree and rename
        try:
            os.rename(tmp, folder)
            return
        except OSError:
            pass
        meta = read_meta(folder, digest)
        if meta is not None and (meta.get("failure") or damage(folder, meta) is None):
            remove_entry(tmp)
            return
        remove_entry(folder)  # a damaged entry, or a link or FIFO in its place
    os.rename(tmp, folder)


def clean_stale(root: Path) -> None:
    """Temporary folders of conversions whose process died (kill -9 mid-conversion)."""
    for tmp in root.glob(".*.tmp"):
        try:
            pid = int(tmp.name.rsplit(".", 2)[-2])
            os.kill(pid, 0)
        except ProcessLookupError:
            remove_entry(tmp)
        except (ValueError, IndexError, PermissionError):
            continue


def temporary_entry(digest: str) -> Path:
    """A fresh temporary folder to convert into, beside the entry it will be published as (a
    rename within one folder is atomic), after removing whatever stands in the place of the
    cache's own folders (a FIFO, file or link) and the temporary folders of dead conversions.
    OSError when the cache is not usable (permissions, a read-only home)."""
    root = cache_root() / "models"
    tmp = root / f".{digest[:32]}.{os.getpid()}.tmp"
    for folder_of_ours in (cache_root(), root):  # a FIFO, file or link in their place
        if entry_kind(folder_of_ours) not in ("dir", "missing"):
            remove_entry(folder_of_ours)
    root.mkdir(parents=True, exist_ok=True)
    clean_stale(root)
    remove_entry(tmp)
    tmp.mkdir()
    return tmp


def record_failure(tmp: Path, folder: Path, meta: dict, reason: str) -> None:
    """Publish the reason a conversion failed (a folder with meta.json only), so the next run
    knows it without converting again."""
    for name in ("model.xml", "model.bin"):
        (tmp / name).unlink(missing_ok=True)
    meta["failure"] = reason
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    publish(tmp, folder)

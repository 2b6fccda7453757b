"""Writing and fingerprinting files: an atomic replace (temporary sibling, fsync, rename) and
the sha256 of a file's bytes.

Every layer writes files that must never be seen half-written (cards, reports, mined
negatives, exported MTEB files) and fingerprints files it must recognise again (datasets,
weights), so both live here, below everything that needs them.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def _atomic_write_all(files: list[tuple[Path, bytes]]) -> None:
    """Write every file to a temporary sibling first (fsynced), then rename them into place in
    order: a crash before the renames changes nothing; the renames themselves take microseconds."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, data in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            staged.append((tmp, path))
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        for tmp, path in staged:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: Path, data: bytes) -> None:
    _atomic_write_all([(path, data)])


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

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


def read_regular_text(path: Path, limit: int, what: str, *, error: type | None = None) -> str:
    """The UTF-8 text of `path`, which must be a regular file (a link to one is followed) of at
    most `limit` bytes. The file type is checked with stat before the file is opened, so a
    FIFO, socket or device is refused at once, never opened for reading (opening a FIFO waits
    for a writer; opening some devices has effects); the open itself is non-blocking and
    re-checks with fstat (benchmark.core.paths.read_bounded), so a swap after the stat cannot
    make it wait either. A stored file maebench reads back (a study's pilot, diagnostics,
    report, a training state) goes through here. `error`: the MaebenchError subclass raised."""
    import stat

    from benchmark.core.errors import MaebenchError
    from benchmark.core.paths import read_text_bounded

    error = error or MaebenchError
    try:
        info = os.stat(path)
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror or type(exc).__name__})") from None
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{path}: {what} is not a regular file")
    return read_text_bounded(path, limit, what, error=error)

"""The output folder: replaced on every build, but never a folder that is not a build (no
silent data loss), and the static assets copied into it."""

from __future__ import annotations

import shutil
from pathlib import Path

from benchmark.site.options import SiteError

MARKER_FILE = ".maebench-site"


def prepare_out(out_dir: Path) -> None:
    """Replace a previous build, but never a folder that is not one (no silent data loss)."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise SiteError(f"--out {out_dir} is a file")
        if any(out_dir.iterdir()) and not (out_dir / MARKER_FILE).is_file():
            raise SiteError(f"--out {out_dir} is not empty and is not a maebench site build")
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    (out_dir / MARKER_FILE).write_text("built by maebench site; replaced on every build\n")


def copy_static(static: Path, out_dir: Path) -> None:
    """The stylesheet and scripts, copied (not linked): the site opens from disk anywhere."""
    target = out_dir / "static"
    target.mkdir()
    if static.is_dir():
        for path in sorted(static.iterdir()):
            if path.is_file():
                shutil.copyfile(path, target / path.name)


def write_files(files: dict[str, str], out_dir: Path) -> None:
    """Every rendered page under `out_dir` (UTF-8, folders made), in sorted order."""
    for rel, html in sorted(files.items()):
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(html, encoding="utf-8")

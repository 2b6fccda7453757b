"""Versions, hardware and time of a run, so a reader can tell how a number was produced."""

from __future__ import annotations

import datetime as dt
import platform
import sys
from importlib import metadata

from benchmark.core.paths import PACKAGE_DIR

# the package's version (benchmark.__version__ re-exports it); here so that provenance, at the
# bottom of the layers, does not import the package's public API above it
VERSION = "0.1.0"
TRACKED_PACKAGES = (
    "torch", "transformers", "faiss-cpu", "ranx", "numpy", "bm25s", "PyStemmer", "tokenizers",
)
SEED = 0


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def hardware() -> dict:
    import os
    import sys

    info: dict = {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "gpu": None}
    torch = sys.modules.get("torch")
    if torch is None:
        # no model ran in this process (a run served from the embedding store): importing torch
        # only to describe it would cost ~2 s, most of such a run
        info["torch"] = "not loaded"
        return info
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    info["torch_threads"] = torch.get_num_threads()
    return info


def git_commit() -> str | None:
    """The commit of the checkout maebench runs from ("<sha>+dirty" with uncommitted changes to
    tracked files), or None when installed from a wheel: the version alone then names the code."""
    import subprocess

    root = PACKAGE_DIR.parent
    if not (root / ".git").exists():
        return None
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}+dirty" if dirty else sha


def now_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def provenance_fields() -> dict:
    return {
        "maebench": VERSION,
        "maebench_commit": git_commit(),
        "versions": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hardware": hardware(),
        "seed": SEED,
        "created_at": now_utc(),
    }

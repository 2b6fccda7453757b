"""Versions, hardware and time of a run, so a reader can tell how a number was produced."""

from __future__ import annotations

import datetime as dt
import platform
import sys
from importlib import metadata

import benchmark

TRACKED_PACKAGES = ("torch", "transformers", "faiss-cpu", "ranx", "numpy", "bm25s", "tokenizers")
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

    info: dict = {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "gpu": None}
    try:
        import torch

        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def now_utc() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def provenance_fields() -> dict:
    return {
        "maebench": benchmark.__version__,
        "versions": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hardware": hardware(),
        "seed": SEED,
        "created_at": now_utc(),
    }

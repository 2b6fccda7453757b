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


# the instruction-set flags that decide which kernels oneDNN, MKL and OpenVINO run (fp32 width,
# bf16 dot products, AMX tiles; asimd/sve on ARM): a speed measured on one set says little about
# another, so results and the backend calibration name them
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16",
             "amx_int8", "asimd", "sve")
# environment variables that cap the ISA those libraries use below what the CPU has: oneDNN's
# (torch's and OpenVINO's copies both read it), MKL's, and OpenVINO's own JIT kernels' (honoured
# by debug-caps builds only before openvino PR 38257, so on a release wheel it may be a no-op)
ISA_CAPS = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS", "OV_CPU_MAX_ISA")


def _cpuinfo() -> list[str]:
    """/proc/cpuinfo's lines up to the first processor's end (bounded: a /proc file has no size,
    and one processor's block is all that is needed); [] where there is none (macOS, Windows)."""
    lines: list[str] = []
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.strip() and lines:
                    break
                lines.append(line)
                if len(lines) > 200:
                    break
    except OSError:
        return []
    return lines


def cpu_model() -> str:
    for line in _cpuinfo():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def cpu_isa() -> list[str]:
    """The ISA_FLAGS this CPU has (x86 `flags`, ARM `Features`), in ISA_FLAGS' order."""
    found: set[str] = set()
    for line in _cpuinfo():
        if line.startswith(("flags", "Features")):
            found |= set(line.split(":", 1)[1].split())
    return [flag for flag in ISA_FLAGS if flag in found]


def isa_caps() -> dict[str, str]:
    """The ISA caps set in the environment (empty: every library uses all the CPU has)."""
    import os

    return {name: os.environ[name] for name in ISA_CAPS if os.environ.get(name)}


def hardware() -> dict:
    import os
    import sys

    info: dict = {"cpu": cpu_model(), "cpu_isa": cpu_isa(), "cpu_count": os.cpu_count(),
                  "gpu": None}
    if isa_caps():
        info["isa_caps"] = isa_caps()
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

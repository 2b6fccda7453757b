"""Which inference backend computes a dense card's vectors: torch, or OpenVINO on CPU.

A cold dense run is almost all corpus encoding, and on CPU OpenVINO runs the same fp32 forward
pass about twice as fast as PyTorch eager (oneDNN's AVX-512 kernels, fused attention), with
vectors that agree to ~1e-7 (issue 18). So `auto`, the default, picks OpenVINO on CPU wherever
it may hold the same numbers, and torch everywhere else, saying why in one line:

- on a GPU torch stays (its fp16/bf16 path is the fast one there);
- only fp32 cards: OpenVINO's bf16 is not torch's bf16, so parity could not be checked;
- only the local engine: Ray actors may sit on GPU nodes the driver cannot see when it keys the
  store, so they always run torch;
- a card whose conversion already failed its parity check on this converter stays on torch.

This module decides without importing torch or openvino (a warm run served from the embedding
store must not pay for either); benchmark.retrievers.openvino_backend converts, checks parity
and may still fall back to torch, which the retriever then records.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from importlib import metadata

from benchmark.core.errors import MaebenchError

BACKENDS = ("auto", "torch", "openvino")
ENV_VAR = "MAEBENCH_BACKEND"


def default_backend() -> str:
    """$MAEBENCH_BACKEND (so `finetune`, `study` and the mteb adapter follow it too), else auto."""
    return os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"


def check_backend(name: str, what: str = "--backend") -> str:
    if name not in BACKENDS:
        raise MaebenchError(f"{what} must be one of {', '.join(BACKENDS)} (got '{name}')")
    return name


@dataclass(frozen=True)
class BackendChoice:
    """The backend to use, and why not OpenVINO when `auto` chose torch (None otherwise)."""

    name: str
    reason: str | None = None
    requested: str = "auto"


def openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None


def openvino_version() -> str | None:
    try:
        return metadata.version("openvino")
    except metadata.PackageNotFoundError:
        return None


def is_cpu(device: str | None) -> bool:
    """Whether `device` (None: the default pick) is the CPU. For None, a CPU-only torch wheel
    answers from its version string without importing torch (~2 s a warm run need not pay)."""
    import sys

    if device is not None:
        return str(device).startswith("cpu")
    if "torch" not in sys.modules:
        try:
            if "+cpu" in metadata.version("torch"):
                return True
        except metadata.PackageNotFoundError:
            return True
    from benchmark.core.devices import pick_device

    return pick_device(None).startswith("cpu")


def choose_backend(requested: str, device: str | None, dtype: str, engine: str = "local") -> BackendChoice:
    """The policy above (a conversion that failed before is the caller's to look up). An explicit
    `openvino` that cannot be honoured is an error, never a silent torch run."""
    check_backend(requested, f"{ENV_VAR} / --backend")
    if requested == "torch":
        return BackendChoice("torch", None, requested)
    problems = []
    if not is_cpu(device):
        problems.append("the device is a GPU, where torch's fp16/bf16 path is the fast one")
    if dtype != "float32":
        problems.append(f"the forward pass is {dtype}; OpenVINO is used for fp32 only (parity)")
    if engine != "local":
        problems.append(f"--engine {engine} encodes with torch")
    if not openvino_available():
        problems.append("openvino is not installed (pip install openvino)")
    if requested == "openvino":
        if problems:
            raise MaebenchError(f"--backend openvino cannot run here: {problems[0]}")
        return BackendChoice("openvino", None, requested)
    if problems:
        return BackendChoice("torch", problems[0], requested)
    return BackendChoice("openvino", None, requested)

"""Which inference backend computes a dense card's vectors: torch, or OpenVINO on CPU.

A cold dense run is almost all corpus encoding, and both backends run the same fp32 forward
pass, with vectors that agree to ~1e-7 (issue 18). Which one is faster depends on the CPU: on
the AMD EPYC Zen 4 (AVX-512) it was built on OpenVINO took half torch's time, on an AVX2-only
EPYC 0.86x (issue 26), and other CPUs (AMX servers, ARM, laptops) differ again. So `auto`, the
default, does not assume: where OpenVINO may hold the same numbers it is measured against torch
on this CPU, once per model, machine and version set (kept by .calibration), and the
faster one is used. Torch everywhere else, saying why in one line:

- on a GPU torch stays (its fp16/bf16 path is the fast one there);
- only fp32 cards: OpenVINO's bf16 is not torch's bf16, so parity could not be checked;
- only the local engine: Ray actors may sit on GPU nodes the driver cannot see when it keys the
  store, so they always run torch;
- a card whose conversion already failed its parity check on this converter stays on torch;
- a card for which torch measured faster on this CPU stays on torch (the numbers are the reason).

This module decides without importing torch or openvino (a warm run served from the embedding
store must not pay for either): the last two rules read small cached files
(benchmark.retrievers.backends.openvino_cache, .calibration). The chosen backend is loaded by
benchmark.retrievers.backends.dispatch; the OpenVINO backend converts, checks parity, measures
(.measurement) and may still fall back to torch, which the retriever then records. `--backend
torch|openvino` (or $MAEBENCH_BACKEND) skips the measurement and forces one.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING

from benchmark.core.errors import MaebenchError

if TYPE_CHECKING:
    from benchmark.catalog.registry import DenseConfig
    from benchmark.retrievers.backends.torch_backend import Role

BACKENDS = ("auto", "torch", "openvino")
ENV_VAR = "MAEBENCH_BACKEND"


def default_backend() -> str:
    """$MAEBENCH_BACKEND (so `finetune`, `study` and the mteb adapter follow it too), else auto."""
    return os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"


def check_backend(name: str, what: str = "--backend") -> str:
    """`name` if it is a backend this package knows, else a one-line error naming `what` set it."""
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
    """The policy above, from what any run knows (the card-specific rules are choose_for_role's).
    An explicit `openvino` that cannot be honoured is an error, never a silent torch run."""
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


def choose_for_role(requested: str, device: str | None, config: DenseConfig, engine: str,
                    weights: str, role: Role) -> BackendChoice:
    """choose_backend, then the rules that need the card's identity: `auto` stays on torch for an
    encoder whose conversion failed before on this converter, or which torch measured faster on
    this CPU. Both are read from small cached files, so nothing is loaded, converted or measured
    here; the retriever asks this once per role, before any store key is made."""
    choice = choose_backend(requested, device, config.dtype, engine)
    if choice.name == "openvino" and choice.requested == "auto":
        from benchmark.retrievers.backends.openvino_cache import recorded_failure

        reason = recorded_failure(weights, config, role)
        if reason:
            return BackendChoice("torch", reason, choice.requested)
    return choice

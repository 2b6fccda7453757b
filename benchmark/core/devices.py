"""Checking a requested torch device before any work, so `--device cuda` on a machine without
CUDA (or a typo such as `--device tpu`) is one line, not an AssertionError from deep inside torch
after the data was loaded; and which device a model runs on when none was asked for."""

from __future__ import annotations

from benchmark.core.errors import MaebenchError

SUPPORTED = ("cpu", "cuda", "mps")


def check_device(device: str | None) -> None:
    """Raise MaebenchError unless `device` (None = automatic) can be used here."""
    if device is None:
        return
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise MaebenchError(f"unknown device '{device}' (use cpu, cuda, cuda:N or mps)") from exc
    if parsed.type not in SUPPORTED:
        raise MaebenchError(f"device '{device}' is not supported (use cpu, cuda, cuda:N or mps)")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise MaebenchError(
                f"device '{device}': CUDA is not available here (torch {torch.__version__}, "
                f"{torch.cuda.device_count()} GPUs); use --device cpu"
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise MaebenchError(
                f"device '{device}': only {torch.cuda.device_count()} CUDA device(s) here"
            )
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise MaebenchError(f"device '{device}': MPS is not available here; use --device cpu")


def pick_device(device: str | None) -> str:
    """The device a model runs on: the one asked for, else CUDA when torch sees it. Kept here,
    below the retrievers, so the backend policy and the dense retriever ask the same question
    without importing each other."""
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"

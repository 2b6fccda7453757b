"""Where the registry, the results database and the data cache live.

The package is installed editable from the repository, so the repository root is the parent
of this package; every location can be overridden by an environment variable so that tests
and CI can point at temporary copies without touching the committed tree.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = Path(os.environ.get("MAEBENCH_ROOT", PACKAGE_DIR.parent))
EMBEDDED_DATA_DIR = PACKAGE_DIR / "data"


def models_dir() -> Path:
    return Path(os.environ.get("MAEBENCH_MODELS_DIR", PROJECT_ROOT / "models"))


def results_dir() -> Path:
    return Path(os.environ.get("MAEBENCH_RESULTS_DIR", PROJECT_ROOT / "results"))


def reported_dir() -> Path:
    return results_dir() / "reported"


def site_dir() -> Path:
    return PROJECT_ROOT / "site"


def home_dir() -> Path:
    """The user's maebench home, outside any checkout: trained weights, the embedding store,
    downloaded data. $MAEBENCH_HOME, else the user cache (~/.cache/maebench)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "maebench"
    return Path(os.environ.get("MAEBENCH_HOME", default))


def cache_dir() -> Path:
    """Downloaded datasets; never inside the repository."""
    return Path(os.environ.get("MAEBENCH_CACHE", home_dir()))


def checkpoints_dir() -> Path:
    """Weights written by `maebench finetune` / `pretrain` (too large for git)."""
    return home_dir() / "checkpoints"


def embeddings_dir() -> Path:
    """The embedding store (keyed shards + manifests)."""
    return home_dir() / "embeddings"


def data_dir_from_env() -> Path | None:
    """A folder of BEIR-format datasets (`<dir>/<task>/corpus.jsonl`), e.g. ../shared/data/beir."""
    value = os.environ.get("MAEBENCH_DATA_DIR")
    return Path(value) if value else None

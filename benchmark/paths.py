"""Where the registry, the results database, the site templates and the data cache live.

models/ and results/ are found, in this order (commands' --models-dir / --results-dir first):
1. $MAEBENCH_MODELS_DIR / $MAEBENCH_RESULTS_DIR;
2. $MAEBENCH_ROOT/models, $MAEBENCH_ROOT/results;
3. the checkout the package runs from (an editable install: the repository's own folders);
4. ./models, ./results in the current directory, when that directory has either;
5. $MAEBENCH_HOME/models, $MAEBENCH_HOME/results (default ~/.cache/maebench).
Templates and static files are package data (benchmark/site_assets, a symlink to the
repository's site/ in a checkout), so `maebench site` works from an installed wheel.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = Path(os.environ.get("MAEBENCH_ROOT", PACKAGE_DIR.parent))
EMBEDDED_DATA_DIR = PACKAGE_DIR / "data"
SITE_ASSETS_DIR = PACKAGE_DIR / "site_assets"


def in_checkout() -> bool:
    """Running from the repository (editable install), not from an installed wheel."""
    return (PACKAGE_DIR.parent / "pyproject.toml").is_file() and (PACKAGE_DIR.parent / ".git").exists()


def _database_dir(name: str, env: str) -> Path:
    if os.environ.get(env):
        return Path(os.environ[env])
    if os.environ.get("MAEBENCH_ROOT") or in_checkout():
        return PROJECT_ROOT / name
    cwd = Path.cwd()
    if (cwd / "models").is_dir() or (cwd / "results").is_dir():
        return cwd / name
    return home_dir() / name


def models_dir() -> Path:
    return _database_dir("models", "MAEBENCH_MODELS_DIR")


def results_dir() -> Path:
    return _database_dir("results", "MAEBENCH_RESULTS_DIR")


def reported_dir() -> Path:
    return results_dir() / "reported"


def site_dir() -> Path:
    """templates/ and static/ of the site: package data when installed, site/ in a checkout."""
    if (SITE_ASSETS_DIR / "templates" / "base.html").is_file():
        return SITE_ASSETS_DIR
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

"""Where the repository and ../shared are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("MAEBENCH_SHARED", REPO.parent / "shared"))
BEIR_DIR = SHARED / "data" / "beir"


def shared_dataset(name: str) -> Path:
    """The folder of a real BEIR dataset in ../shared, or skip the test with a message."""
    folder = BEIR_DIR / name
    if not (folder / "corpus.jsonl").is_file():
        pytest.skip(f"../shared data not found at {folder}; integration test skipped")
    return folder

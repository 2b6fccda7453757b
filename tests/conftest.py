"""Shared fixtures: where ../shared is, temporary results folders, tiny checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Tests never write into the user's maebench home (embedding store, checkpoints): one scratch
# home per test session, inherited by the CLI subprocesses the tests start.
if "MAEBENCH_TEST_KEEP_HOME" not in os.environ:
    import tempfile

    os.environ["MAEBENCH_HOME"] = tempfile.mkdtemp(prefix="maebench-test-home-")
# Dense runs use the torch backend unless a test chooses another. The default `auto` converts
# every checkpoint to OpenVINO and checks its parity first: right for a user's real model, but in
# tests each fresh random checkpoint paid a conversion (test_every_kind_runs_end_to_end: 3 s with
# torch, 71 s with auto on the shared 2-core machine). The OpenVINO backend has its own tests
# (tests/test_backend_openvino.py), which clear this variable or name the backend they test.
os.environ.setdefault("MAEBENCH_BACKEND", "torch")
SHARED = Path(os.environ.get("MAEBENCH_SHARED", REPO.parent / "shared"))
BEIR_DIR = SHARED / "data" / "beir"


def shared_dataset(name: str) -> Path:
    """The folder of a real BEIR dataset in ../shared, or skip the test with a message."""
    folder = BEIR_DIR / name
    if not (folder / "corpus.jsonl").is_file():
        pytest.skip(f"../shared data not found at {folder}; integration test skipped")
    return folder


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "results"
    folder.mkdir()
    return folder


@pytest.fixture(scope="session")
def tiny_texts() -> list[str]:
    from benchmark.core.paths import EMBEDDED_DATA_DIR
    from benchmark.datasets.beir import load_corpus, load_queries

    corpus = load_corpus(EMBEDDED_DATA_DIR / "tiny" / "corpus.jsonl")
    queries = load_queries(EMBEDDED_DATA_DIR / "tiny" / "queries.jsonl")
    return [d.title + " " + d.text for d in corpus.values()] + list(queries.values())


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, tiny_texts) -> Path:
    from tests.checkpoints import tiny_bert

    return tiny_bert(tmp_path_factory.mktemp("tiny-bert"), tiny_texts)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models run faster on one thread, and much faster on a shared, busy CPU (modules that
    train tiny models use it with `pytestmark = pytest.mark.usefixtures("one_torch_thread")`)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

"""Shared fixtures: temporary results folders, tiny checkpoints, the made-up scifact workspace
and the study environment. Helpers that are not fixtures live in tests/helpers/."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

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
# torch's OpenMP threads sleep instead of spinning while they wait for work, as `maebench
# finetune` sets for itself (benchmark/training/finetune_trainer.py:passive_thread_wait, which
# measured 12.8 against 5.6 CPU-s a step on this 2-core machine): libgomp reads it when torch is
# first imported, which is after this file; CLI subprocesses inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# OpenVINO's converter sends telemetry on every conversion unless it runs in CI: each event forks
# a copy of the test process (35 forks, ~2 s of CPU a conversion here, every one failing offline).
# The suite runs as CI runs it (CI sets CI=true), subprocesses included; nothing in maebench reads
# CI.
os.environ.setdefault("CI", "true")
# the suite is offline: a test that reached for the Hugging Face Hub waited on its network
# timeouts (`pytest -m "not slow"` run without scripts/test.sh: 318 s wall for 61 s of CPU)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


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
    from tests.helpers.checkpoints import tiny_bert

    return tiny_bert(tmp_path_factory.mktemp("tiny-bert"), tiny_texts)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Every test starts with one torch thread. Tiny models run faster on one thread, and far
    faster on a shared, busy CPU: with two, each small op waits for the other thread at a barrier
    (test_registry's tiny-checkpoint encodings took 0.05 s a test on one thread, 0.4 s on two
    beside a niced job), and under `-n 2` two workers would run four threads on two cores. A run
    that sets its own count (fine-tuning uses every core) keeps it until the next test starts;
    the pooled multi-thread encoding path has its own test (test_encoders.py), and CLI
    subprocesses keep torch's default."""
    torch = sys.modules.get("torch")  # never imported here for a test that does not use it
    if torch is not None and torch.get_num_threads() != 1:
        torch.set_num_threads(1)


@pytest.fixture(scope="session")
def scifact_setup(tmp_path_factory) -> dict[str, Path]:
    """The made-up scifact data dir, a models dir (tiny-backbone + bm25 cards) and the tiny BERT
    (tests/helpers/scifact.py), built once; tests take `scifact_env`, which copies the models."""
    from tests.helpers.scifact import make_workspace

    return make_workspace(tmp_path_factory.mktemp("ft"))


@pytest.fixture
def scifact_env(scifact_setup, tmp_path, monkeypatch) -> dict[str, Path]:
    """A fresh MAEBENCH_HOME and models folder per test (cards of earlier tests do not leak)."""
    models = tmp_path / "models"
    shutil.copytree(scifact_setup["models"], models)
    monkeypatch.setenv("MAEBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MAEBENCH_MODELS_DIR", str(models))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return {**scifact_setup, "models": models, "home": tmp_path / "home"}


@pytest.fixture
def study_env(tmp_path, monkeypatch, tiny_bert_dir):
    """Models and results folders for `maebench study` on the tiny task, with fine-tuning
    replaced by a copy of the backbone card; returns the names fine-tuning was called with."""
    from benchmark.training.pretrain import write_card
    from tests.helpers.cards import tiny_card

    models = tmp_path / "models"
    write_card(tiny_card(tiny_bert_dir), models, overwrite=False)
    monkeypatch.setenv("MAEBENCH_MODELS_DIR", str(models))
    monkeypatch.setenv("MAEBENCH_RESULTS_DIR", str(tmp_path / "results"))
    calls = []

    def fake_finetune(backbone, task, recipe, seed=0, name=None, models_dir=None, **_):
        calls.append(name)
        card = backbone.model_copy(update={"name": name, "pretraining": backbone.pretraining})
        return write_card(card, models_dir, overwrite=False)

    import benchmark.training.finetune as finetune

    monkeypatch.setattr(finetune, "finetune_card", fake_finetune)
    return calls

"""The registry: every card in models/ validates, says where its settings come from, and its
encoder configuration loads and encodes with a tiny checkpoint of the right architecture."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from benchmark.catalog.registry import load_registry, parse_card
from benchmark.core.errors import RegistryError
from benchmark.retrievers.dense import DenseRetriever
from tests.helpers import checkpoints
from tests.helpers.paths import REPO

EXPECTED = {
    "bm25", "bm25-multifield", "all-minilm-l6-v2", "retromae", "retromae-msmarco",
    "retromae-msmarco-finetune", "retromae-msmarco-distill", "retromae-beir", "dupmae", "cotmae",
    "cotmae-msmarco-retriever", "simlm", "simlm-msmarco-finetuned", "master", "bowdpr-marco",
    "bowdpr-marco-ft", "dpr-multiset", "ance", "tas-b", "contriever", "contriever-msmarco",
    "condenser", "cocondenser-marco", "cocondenser-marco-retriever", "gtr-t5-base", "e5-base-v2",
    "bge-base-en-v1.5",
}
REGISTRY = load_registry(REPO / "models")


def test_registry_holds_every_expected_card():
    assert set(REGISTRY) >= EXPECTED


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_card_is_documented(name):
    card = REGISTRY[name]
    assert card.source.strip() and card.license and card.paper is not None
    if card.retriever.kind == "dense":
        assert card.embedding_dim or card.weights == "unreleased"
        if card.weights == "public":
            assert card.parameters
    if card.family == "mae":
        assert card.pretraining is not None and card.finetuning is not None


def test_documented_prefixes_and_pooling():
    assert REGISTRY["e5-base-v2"].retriever.query_prefix == "query: "
    assert REGISTRY["e5-base-v2"].retriever.passage_prefix == "passage: "
    bge = REGISTRY["bge-base-en-v1.5"].retriever
    assert bge.query_prefix == "Represent this sentence for searching relevant passages: "
    assert bge.passage_prefix == ""
    assert REGISTRY["contriever"].retriever.pooling == "mean"
    for name in ("retromae-beir", "cotmae-msmarco-retriever", "cocondenser-marco-retriever"):
        assert REGISTRY[name].retriever.pooling == "cls"
    assert REGISTRY["dpr-multiset"].retriever.encoder == "separate"
    assert REGISTRY["gtr-t5-base"].retriever.head == ("dense",)
    assert REGISTRY["ance"].retriever.head == ("dense", "layernorm")
    assert REGISTRY["bm25-multifield"].retriever.fields == "multifield"
    assert REGISTRY["bm25"].retriever.fields == "flat"


def test_unknown_keys_and_missing_fields_are_rejected():
    raw = yaml.safe_load((REPO / "models" / "e5-base-v2.yaml").read_text())
    raw["retriever"]["poolin"] = "mean"
    with pytest.raises(RegistryError, match="poolin"):
        parse_card(yaml.safe_dump(raw), "typo")
    raw = yaml.safe_load((REPO / "models" / "retromae.yaml").read_text())
    del raw["pretraining"]
    with pytest.raises(RegistryError, match="pretraining"):
        parse_card(yaml.safe_dump(raw), "mae without recipe")
    raw = yaml.safe_load((REPO / "models" / "dupmae.yaml").read_text())
    raw["retriever"]["checkpoint"] = "someone/dupmae"
    with pytest.raises(RegistryError, match="unreleased"):
        parse_card(yaml.safe_dump(raw), "unreleased with checkpoint")


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory, tiny_texts) -> dict[str, Path]:
    """One tiny checkpoint per architecture; heads are added per card below."""
    mk = tmp_path_factory.mktemp
    return {
        "bert": checkpoints.tiny_bert(mk("bert"), tiny_texts),
        "mlm": checkpoints.tiny_bert_mlm(mk("mlm"), tiny_texts),
        "dpr-q": checkpoints.tiny_dpr(mk("dq"), tiny_texts, "query", seed=1),
        "dpr-p": checkpoints.tiny_dpr(mk("dp"), tiny_texts, "passage", seed=2),
        "t5": checkpoints.tiny_t5(mk("t5"), tiny_texts),
    }


@pytest.mark.parametrize(
    "name", sorted(n for n, c in REGISTRY.items() if c.retriever.kind == "dense")
)
def test_card_encoder_configuration_runs_on_a_tiny_checkpoint(name, tiny_dirs, tmp_path):
    """The card's own settings (pooling, head, prefixes, title mode, similarity) with only the
    weights swapped for a tiny checkpoint of the same architecture."""
    import shutil

    config = REGISTRY[name].retriever
    update: dict = {}
    if config.encoder == "separate":
        update = {"query_checkpoint": str(tiny_dirs["dpr-q"]),
                  "passage_checkpoint": str(tiny_dirs["dpr-p"])}
    else:
        arch = {"t5": "t5", "dupmae": "mlm"}.get(config.encoder, "bert")
        folder = tiny_dirs[arch]
        if config.head:
            folder = Path(shutil.copytree(folder, tmp_path / "ckpt"))
            checkpoints.add_st_head(folder, list(config.head), dim=32)
        update = {"checkpoint": str(folder), "revision": None, "local_package": None}
    if config.encoder == "dupmae" and config.dupmae_sparse_top_k is None:
        update |= {"dupmae_sparse_top_k": 8, "dupmae_sparse_weight": 1.0}
    tiny = config.model_copy(update=update)
    retriever = DenseRetriever(tiny, device="cpu")
    queries = retriever.encode_queries(["why do stars twinkle"])
    from benchmark.datasets.records import Document

    passages = retriever.encode_passages([Document(title="Stars", text="air bends light")])
    assert queries.shape[1] == passages.shape[1] > 0
    assert np.isfinite(queries).all() and np.isfinite(passages).all()


def _cli(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    env.pop("MAEBENCH_WEIGHTS_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "benchmark.cli", *args], capture_output=True, text=True, env=env,
        cwd=REPO, timeout=120,
    )


@pytest.mark.slow
@pytest.mark.parametrize("model", ["retromae-beir", "dupmae"])
def test_unreachable_weights_fail_with_one_line(model, tmp_path):
    proc = _cli(["run", "--model", model, "--task", "tiny", "--results-dir", str(tmp_path / "r")],
                tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    if model == "retromae-beir":
        assert "Shitao/RetroMAE_BEIR" in errors[0] and "MAEBENCH_WEIGHTS_DIR" in errors[0]
    else:
        assert "never released" in errors[0]
    assert not (tmp_path / "r" / model).exists()

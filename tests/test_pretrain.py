"""`maebench pretrain` end to end on a tiny checkpoint: the card, the saved encoder, resume,
reproducibility, and the one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmark.catalog.registry import load_card
from benchmark.core.errors import DataError, MaebenchError, ModelLoadError
from benchmark.core.paths import EMBEDDED_DATA_DIR
from benchmark.training.pretrain import PretrainOptions, pretrain_card
from benchmark.training.pretrain_recipe import load_recipe, parse_budget, resolve_steps
from tests.test_objectives import tiny_card

TINY_CORPUS = str(EMBEDDED_DATA_DIR / "tiny" / "corpus.jsonl")
SMALL = {"batch_size": "4", "max_length": "32"}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def options(tmp_path: Path, name: str, **kw) -> PretrainOptions:
    base = dict(objective="mlm", corpus=TINY_CORPUS, budget="4steps", name=name, seed=0,
                overrides=dict(SMALL), models_dir=tmp_path / "models", save_every=2)
    base.update(kw)
    return PretrainOptions(**base)



def die_after_a_save(monkeypatch, run) -> None:
    """Call `run` with pre-training killed (KeyboardInterrupt) right after a checkpoint is saved,
    then restore the trainer: the kill a resume must survive."""
    import benchmark.training.pretrain as pretrain

    original = pretrain._Trainer._save

    def save_then_die(self, state):
        original(self, state)
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(pretrain._Trainer, "_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run()
    monkeypatch.setattr(pretrain._Trainer, "_save", original)

def test_card_weights_and_reload(tiny_bert_dir, tmp_path) -> None:
    import torch
    from transformers import AutoModel

    from benchmark.core.paths import checkpoints_dir
    from benchmark.retrievers.dense import DenseRetriever

    path = pretrain_card(tiny_card(tiny_bert_dir), options(tmp_path, "tiny-mlm-pt", objective="retromae"))
    card = load_card(path)
    pre = card.pretraining
    assert card.retriever.checkpoint == "home:checkpoints/tiny-mlm-pt"
    assert card.retriever.revision == f"sha256:{pre.weights_sha256}"
    assert pre.objective == "retromae" and pre.steps == 4 and pre.seed == 0
    assert pre.tokens_seen > 0 and pre.recipe["encoder_mask"] == 0.3 and pre.recipe["batch_size"] == 4
    assert pre.loss_start is not None and pre.loss_end is not None and pre.wall_time_s >= 0
    assert pre.corpus_fingerprint and pre.versions["torch"] and pre.initialised_from == "tiny-init"
    assert "no MLM head" in pre.notes and "1-layer enhanced decoder" in pre.notes
    folder = checkpoints_dir() / "tiny-mlm-pt"
    assert not list(checkpoints_dir().glob(".tiny-mlm-pt.partial"))  # staging cleaned up
    log = json.loads((folder / "pretrain_log.json").read_text())
    assert len(log["losses"]) == 4
    # only the encoder was saved, as a plain AutoModel; the card loads it to the same vectors
    model = AutoModel.from_pretrained(folder).eval()
    assert not any(k.startswith(("c_head", "head", "cls")) for k in model.state_dict())
    texts = ["stars twinkle in turbulent air", "light pollution washes out faint stars"]
    retriever = DenseRetriever(card.retriever, device="cpu", name=card.name)
    vectors = retriever.encode_queries(texts)
    tokens = retriever.query_encoder.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        direct = model(**tokens).last_hidden_state[:, 0].numpy()
    np.testing.assert_allclose(vectors, direct, atol=1e-5)
    # a pre-trained card is itself a valid init (home: checkpoint, sha256 revision checked)
    chained = load_card(pretrain_card(card, options(tmp_path, "tiny-chain", budget="2steps")))
    assert chained.pretraining.initialised_from == "tiny-mlm-pt"


def test_fixed_seed_same_loss_curve_and_resume(tiny_bert_dir, tmp_path, monkeypatch) -> None:
    from benchmark.core.paths import checkpoints_dir

    init = tiny_card(tiny_bert_dir)
    a = load_card(pretrain_card(init, options(tmp_path, "seed-a", objective="cotmae")))
    b = load_card(pretrain_card(init, options(tmp_path, "seed-b", objective="cotmae")))
    c = load_card(pretrain_card(init, options(tmp_path, "seed-c", objective="cotmae", seed=1)))
    curve = [json.loads((checkpoints_dir() / n / "pretrain_log.json").read_text())["losses"]
             for n in ("seed-a", "seed-b", "seed-c")]
    assert curve[0] == curve[1] and curve[0] != curve[2]
    assert a.pretraining.weights_sha256 == b.pretraining.weights_sha256 != c.pretraining.weights_sha256

    # a run killed after its step-2 save resumes to the same weights as an uninterrupted one
    die_after_a_save(monkeypatch, lambda: pretrain_card(init, options(tmp_path, "seed-d",
                                                                      objective="cotmae")))
    assert (checkpoints_dir() / ".seed-d.partial" / "progress.json").is_file()
    with pytest.raises(MaebenchError, match="--resume"):
        pretrain_card(init, options(tmp_path, "seed-d", objective="cotmae"))
    d = load_card(pretrain_card(init, options(tmp_path, "seed-d", objective="cotmae", resume=True)))
    resumed = json.loads((checkpoints_dir() / "seed-d" / "pretrain_log.json").read_text())["losses"]
    assert resumed == curve[0]
    assert d.pretraining.weights_sha256 == a.pretraining.weights_sha256


def test_budget_parsing_and_too_small(tiny_bert_dir, tmp_path) -> None:
    recipe = load_recipe("mlm")
    assert parse_budget("300steps") == (300, "steps")
    assert parse_budget("1.5M tokens") == (1_500_000, "tokens")
    assert resolve_steps("2M", recipe) == 2_000_000 // (256 * 512)
    with pytest.raises(MaebenchError, match="smaller than one optimizer step"):
        pretrain_card(tiny_card(tiny_bert_dir), options(tmp_path, "x", budget="100 tokens"))
    with pytest.raises(MaebenchError, match="not '<number>"):
        parse_budget("lots")


def test_errors(tiny_bert_dir, tmp_path, monkeypatch) -> None:
    init = tiny_card(tiny_bert_dir)
    with pytest.raises(MaebenchError, match="unknown objective 'mae'"):
        pretrain_card(init, options(tmp_path, "x", objective="mae"))
    bad = tmp_path / "notbeir.jsonl"
    bad.write_text('{"id": 1, "body": "no text field"}\n')
    with pytest.raises(DataError, match="is not BEIR corpus jsonl"):
        pretrain_card(init, options(tmp_path, "x", corpus=str(bad)))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = tiny_card(tmp_path / "no-such-weights")
    missing = missing.model_copy(update={"retriever": missing.retriever.model_copy(
        update={"checkpoint": "org/not-downloaded-model"})})
    with pytest.raises(ModelLoadError, match="cannot load checkpoint org/not-downloaded-model"):
        pretrain_card(missing, options(tmp_path, "x"))
    with pytest.raises(MaebenchError, match="unknown recipe setting 'lr'"):
        pretrain_card(init, options(tmp_path, "x", overrides={"lr": "1"}))


def test_cli_errors_are_one_line(tmp_path) -> None:
    cmd = [sys.executable, "-m", "benchmark.cli", "pretrain", "--objective", "nope", "--init",
           "all-minilm-l6-v2", "--corpus", "scifact", "--budget", "10steps", "--name", "x"]
    out = subprocess.run(cmd, capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1",
                         "PATH": "/usr/bin:/bin"})
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: unknown objective 'nope' (known: mlm, condenser, cocondenser, retromae, dupmae, "
        "cotmae, bowpred, simlm)"]

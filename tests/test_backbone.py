"""The MAE lab's backbones (issue 17): a BERT built from nothing is a pure function of (corpus,
size, seed); pre-training saves the MLM head with the encoder and continues from it; an init
without a head gets the head trained with the encoder frozen first."""

from __future__ import annotations

import json

import pytest

from benchmark.catalog.registry import load_card
from benchmark.core.paths import EMBEDDED_DATA_DIR
from benchmark.training.backbone import (
    BackboneOptions,
    BackboneSize,
    build_backbone,
    new_backbone,
    vocabulary_sha256,
)
from benchmark.training.pretrain import PretrainOptions, load_init_parts, pretrain_card
from tests.helpers.cards import tiny_card
from tests.helpers.training import corpus_texts

TINY_CORPUS = str(EMBEDDED_DATA_DIR / "tiny" / "corpus.jsonl")
SMALL = BackboneSize(layers=2, hidden=32, heads=2, ffn=64, max_positions=64, vocab_size=300)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MAEBENCH_HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.mark.slow
def test_vocabulary_and_weights_are_a_function_of_corpus_size_and_seed() -> None:
    texts = corpus_texts()
    model_a, tok_a = build_backbone(texts, SMALL, seed=0)
    model_b, tok_b = build_backbone(texts, SMALL, seed=0)
    model_c, tok_c = build_backbone(texts, SMALL, seed=1)
    assert vocabulary_sha256(tok_a) == vocabulary_sha256(tok_b) == vocabulary_sha256(tok_c)
    assert tok_a.convert_ids_to_tokens([0, 1, 2, 3, 4]) == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert tok_a("The STARS") == tok_b("the stars")  # lower-cased
    a, b, c = model_a.state_dict(), model_b.state_dict(), model_c.state_dict()
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    assert any(not (a[k] == c[k]).all() for k in a if k.endswith("weight"))
    config = model_a.config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads,
            config.intermediate_size, config.max_position_embeddings) == (2, 32, 2, 64, 64)
    assert config.vocab_size == len(tok_a) <= 300


@pytest.mark.slow
def test_backbone_new_writes_a_card_and_reads_no_evaluation_split(home, monkeypatch) -> None:
    from transformers import AutoTokenizer

    import benchmark.datasets.beir as data
    from benchmark.core.paths import checkpoints_dir

    def refuse(*_, **__):
        raise AssertionError("backbone new must not read queries or qrels")

    monkeypatch.setattr(data, "load_qrels", refuse)
    monkeypatch.setattr(data, "load_queries", refuse, raising=False)
    path = new_backbone(BackboneOptions(name="bb", corpus=TINY_CORPUS, size=SMALL, seed=3,
                                        models_dir=home / "models"))
    card = load_card(path)
    pre = card.pretraining
    assert card.retriever.pooling == "cls" and card.retriever.similarity == "dot"
    assert not card.retriever.normalize and card.retriever.passage_max_length == 64  # <= positions
    assert pre.seed == 3 and pre.mlm_head and pre.steps == 0 and pre.architecture["layers"] == 2
    folder = checkpoints_dir() / "bb"
    assert pre.vocabulary_sha256 == vocabulary_sha256(AutoTokenizer.from_pretrained(folder))
    assert card.retriever.revision == f"sha256:{pre.weights_sha256}"
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["BertForMaskedLM"]


def test_pretraining_saves_the_head_and_the_next_stage_continues_with_it(home) -> None:
    import torch
    from transformers import AutoModelForMaskedLM

    from benchmark.core.paths import checkpoints_dir

    backbone = load_card(new_backbone(BackboneOptions(name="bb", corpus=TINY_CORPUS, size=SMALL,
                                                      models_dir=home / "models")))
    options = PretrainOptions(objective="mlm", corpus=TINY_CORPUS, budget="2steps", name="bb-s0",
                              overrides={"batch_size": "4", "max_length": "32"},
                              models_dir=home / "models")
    stage0 = load_card(pretrain_card(backbone, options))
    assert stage0.pretraining.mlm_head and stage0.pretraining.head_warmup_steps == 0
    assert stage0.pretraining.cpu_time_s > 0 and stage0.pretraining.flops > 0
    assert "MLM head loaded from the init checkpoint" in stage0.pretraining.notes
    assert stage0.pretraining.vocabulary_sha256 == backbone.pretraining.vocabulary_sha256
    folder = checkpoints_dir() / "bb-s0"
    masked_lm, info = AutoModelForMaskedLM.from_pretrained(folder, output_loading_info=True)
    assert info["missing_keys"] == [] or set(info["missing_keys"]) <= {"cls.predictions.decoder.weight"}
    # the saved head is the trained one: reloaded through the next stage's loader it gives the
    # same MLM logits as the saved masked-LM model
    encoder, head, tokenizer, _, has_head = load_init_parts(stage0)
    assert has_head
    batch = tokenizer(["stars twinkle in turbulent air"], return_tensors="pt")
    masked_lm.eval(), encoder.eval(), head.eval()
    with torch.no_grad():
        want = masked_lm(**batch).logits
        got = head(encoder(**batch).last_hidden_state)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # and the head is trained: it differs from the random backbone's
    initial = AutoModelForMaskedLM.from_pretrained(checkpoints_dir() / "bb").eval()
    with torch.no_grad():
        assert not torch.allclose(initial(**batch).logits, want)


def test_an_init_without_head_gets_a_frozen_encoder_warm_up(home, tiny_bert_dir, monkeypatch) -> None:
    import torch
    from transformers import AutoModel

    import benchmark.training.pretrain as pretrain

    snapshots = []
    real_save = pretrain._Trainer._save

    def snapshot(self, state):  # the first save comes right after the warm-up
        encoder = self.accelerator.unwrap_model(self.model).encoder
        snapshots.append({k: v.clone() for k, v in encoder.state_dict().items()})
        return real_save(self, state)

    monkeypatch.setattr(pretrain._Trainer, "_save", snapshot)
    options = PretrainOptions(objective="retromae", corpus=TINY_CORPUS, budget="2steps", name="warm",
                              overrides={"batch_size": "4", "max_length": "32"},
                              models_dir=home / "models")
    card = load_card(pretrain_card(tiny_card(tiny_bert_dir), options))
    assert card.pretraining.head_warmup_steps == 2  # default: min(200, steps)
    assert "head warm-up: 2 steps with the encoder frozen" in card.pretraining.notes
    original = AutoModel.from_pretrained(tiny_bert_dir).state_dict()
    after_warm_up = snapshots[0]
    assert all(torch.equal(original[k], after_warm_up[k]) for k in original)
    from benchmark.core.paths import checkpoints_dir

    log = json.loads((checkpoints_dir() / "warm" / "pretrain_log.json").read_text())
    assert len(log["head_warmup_losses"]) == 2 and len(log["losses"]) == 2
    # asked for none: no warm-up, and the card says so
    options = PretrainOptions(objective="mlm", corpus=TINY_CORPUS, budget="2steps", name="cold",
                              overrides={"batch_size": "4", "max_length": "32", "head_warmup_steps": "0"},
                              models_dir=home / "models")
    assert load_card(pretrain_card(tiny_card(tiny_bert_dir), options)).pretraining.head_warmup_steps == 0

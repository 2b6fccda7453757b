"""Packed pre-training batches (issue 26): each objective's loss is the same on a batch padded to
its own longest span as on the same spans padded to max_length; batches fill a budget of real
tokens with little padding; a stream is a pure function of (seed, step); held-out loss terms are
measured on documents never trained on and land in the card and the log."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmark.training.corpus import (
    PackedPairStream,
    PairStream,
    build_pairs,
    split_heldout,
)
from tests.helpers.training import OBJECTIVES, build, corpus_texts


@pytest.fixture(scope="module")
def tokenizer(tiny_bert_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_bert_dir)


def _padded_to(batch: dict, width: int, pad_id: int) -> dict:
    """The same batch with every (B, L) tensor padded on the right to `width` (and RetroMAE's
    (B, L, L) visibility to (B, width, width)): what a batch of max_length spans looked like."""
    out = {}
    for key, value in batch.items():
        if not torch.is_tensor(value) or value.dim() < 2 or key == "bag_of_words":
            out[key] = value
            continue
        extra = width - value.shape[1]
        fill = {"labels": -100, "decoder_labels": -100, "attention_mask": 0,
                "decoder_attention_mask": 0, "decoder_visible": False}.get(key, pad_id)
        pad = (0, extra) if value.dim() == 2 else (0, extra, 0, extra)
        out[key] = torch.nn.functional.pad(value, pad, value=fill)
    return out


@pytest.mark.parametrize("name", OBJECTIVES)
def test_a_packed_batch_has_the_loss_of_the_padded_one(name, tiny_bert_dir, tokenizer) -> None:
    """Where it is defined (every objective here: padding is masked everywhere), padding to the
    batch's own longest span instead of to max_length leaves the loss and each term unchanged."""
    pairs = build_pairs(corpus_texts(), tokenizer, 32, balanced=True)
    objective = build(name, tiny_bert_dir).eval()
    chosen = sorted(pairs, key=lambda p: len(p[0].ids))[:4]
    batch = objective.corrupt(chosen, np.random.default_rng(0))
    width = batch["input_ids"].shape[1]
    assert width < 32, "the test needs spans shorter than max_length"
    with torch.no_grad():
        packed, packed_parts = objective(batch)
        padded, padded_parts = objective(_padded_to(batch, 32, tokenizer.pad_token_id))
    assert float(packed) == pytest.approx(float(padded), rel=1e-5, abs=1e-6)
    for key, value in packed_parts.items():
        assert value == pytest.approx(padded_parts[key], rel=1e-5, abs=1e-6), key


def test_balanced_spans_pair_up_evenly(tokenizer) -> None:
    texts = corpus_texts()
    pairs = build_pairs(texts, tokenizer, 32, balanced=True)
    old = build_pairs(texts, tokenizer, 32)
    gap = np.mean([abs(len(a.ids) - len(b.ids)) for a, b in pairs])
    old_gap = np.mean([abs(len(a.ids) - len(b.ids)) for a, b in old])
    assert gap < old_gap
    # every token of every document is still in some span (no text lost by the balanced cut)
    assert sum(len(s.ids) - 2 for p in pairs for s in p) >= sum(len(s.ids) - 2 for p in old for s in p) * 0.9


def test_packed_stream_fills_the_budget_with_real_tokens(tokenizer) -> None:
    pairs = build_pairs(corpus_texts(), tokenizer, 32, balanced=True)
    stream = PackedPairStream(pairs, 8 * 32, seed=3)
    real = positions = 0
    for step in range(40):
        batch = stream.batch(step)
        width = max(len(s.ids) for p in batch for s in p)
        assert 2 * len(batch) * width <= 8 * 32
        real += sum(len(s.ids) for p in batch for s in p)
        positions += 2 * len(batch) * width
    assert 1 - real / positions < 0.10, "padding share"
    # the same (seed, step) gives the same batch in a fresh stream (what resume relies on)
    again = PackedPairStream(pairs, 8 * 32, seed=3)
    for step in (39, 0, 17):
        assert [id(p) for p in again.batch(step)] == [id(p) for p in stream.batch(step)]
    # one epoch covers every pair once
    first_epoch = len(stream._plan(0))
    seen = [id(p) for step in range(first_epoch) for p in stream.batch(step)]
    assert sorted(seen) == sorted(id(p) for p in pairs)
    other = PackedPairStream(pairs, 8 * 32, seed=4)
    assert [id(p) for p in other.batch(0)] != [id(p) for p in stream.batch(0)]


def test_heldout_documents_are_chosen_by_their_text() -> None:
    texts = [f"document number {i} about things" for i in range(400)]
    kept, held = split_heldout(texts, 0.1)
    assert 20 <= len(held) <= 60 and len(kept) + len(held) == 400
    kept2, held2 = split_heldout(list(reversed(texts)) + ["another one"], 0.1)
    assert set(held) <= set(held2)  # order and neighbours do not change who is held out


@pytest.mark.slow
@pytest.mark.integration
def test_packing_leaves_under_5_percent_padding_on_the_study_corpus(tokenizer) -> None:
    """The acceptance figure on the real SciFact corpus at the arms' shape (128 tokens, 64 x 128
    positions a step) with the tiny tokenizer: at most 5% of positions are padding, against the
    old batches' share measured on the same spans."""
    from tests.helpers.paths import shared_dataset

    folder = shared_dataset("scifact")
    texts = corpus_texts(folder / "corpus.jsonl")[:1500]
    packed_pairs = build_pairs(texts, tokenizer, 128, balanced=True)
    packed = PackedPairStream(packed_pairs, 64 * 128, seed=0)
    old = PairStream(build_pairs(texts, tokenizer, 128), 32, seed=0)

    def share(batches) -> float:
        real = sum(len(s.ids) for b in batches for p in b for s in p)
        positions = sum(2 * len(b) * max(len(s.ids) for p in b for s in p) for b in batches)
        return 1 - real / positions

    assert share([packed.batch(s) for s in range(30)]) <= 0.05
    assert share([old.batch(s) for s in range(30)]) > 0.05


@pytest.mark.slow
def test_pretrain_records_heldout_terms_and_curves(tiny_bert_dir, tmp_path) -> None:
    from benchmark.catalog.registry import load_card
    from benchmark.core.paths import checkpoints_dir
    from benchmark.training.pretrain import PretrainOptions, pretrain_card
    from tests.helpers.cards import tiny_card

    texts = corpus_texts()
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"_id": str(i), "title": "", "text": t}) + "\n"
                              for i, t in enumerate(texts * 3)))
    options = PretrainOptions(objective="bowpred", corpus=str(corpus), budget="4steps", name="held",
                              overrides={"batch_size": "4", "max_length": "32"},
                              models_dir=tmp_path / "models", holdout=0.2, evaluations=2)
    card = load_card(pretrain_card(tiny_card(tiny_bert_dir), options))
    record = card.pretraining
    assert set(record.heldout_start) >= {"loss", "mlm", "bow"}
    assert record.heldout_end["bow"] != record.heldout_start["bow"]
    assert record.positions_seen >= record.tokens_seen > 0
    log = json.loads((checkpoints_dir() / "held" / "pretrain_log.json").read_text())
    assert [e["step"] for e in log["heldout"]] == [0, 2, 4]
    assert len(log["lrs"]) == len(log["losses"]) == 4 and all(lr >= 0 for lr in log["lrs"])
    assert "held out:" in record.notes

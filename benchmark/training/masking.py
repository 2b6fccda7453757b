"""Whole-word masking as the MAE authors' collators do it (transformers'
DataCollatorForWholeWordMask._whole_word_mask + torch_mask_tokens), but driven by the fast
tokenizer's word ids instead of the '##' prefix (so it works for any fast tokenizer) and by a
numpy Generator (so a batch is a pure function of (seed, step): resume and reproducibility
need no hidden RNG state).

Hand-written because the transformers collator reads '##' WordPiece prefixes, uses the global
torch RNG and returns only the encoder view; RetroMAE needs up to 256 independent decoder masks
per text.
"""

from __future__ import annotations

import numpy as np

MAX_PREDICTIONS = 512  # transformers' DataCollatorForWholeWordMask default


def word_groups(word_ids: np.ndarray) -> list[np.ndarray]:
    """Token positions grouped by word; special tokens (word id < 0) belong to no word."""
    groups: list[list[int]] = []
    previous = None
    for position, word in enumerate(word_ids.tolist()):
        if word < 0:
            previous = None
            continue
        if word == previous:
            groups[-1].append(position)
        else:
            groups.append([position])
        previous = word
    return [np.asarray(g, dtype=np.int64) for g in groups]


def whole_word_mask(
    groups: list[np.ndarray], length: int, probability: float, rng: np.random.Generator
) -> np.ndarray:
    """A boolean mask over `length` positions covering whole words, as _whole_word_mask does:
    shuffle the words, then take each word that still fits under round(length * p) tokens
    (length counts the special tokens, as theirs does)."""
    mask = np.zeros(length, dtype=bool)
    if not groups:
        return mask
    budget = min(MAX_PREDICTIONS, max(1, int(round(length * probability))))
    covered = 0
    for index in rng.permutation(len(groups)):
        group = groups[index]
        if covered >= budget:
            break
        if covered + len(group) > budget:
            continue
        mask[group] = True
        covered += len(group)
    return mask


def replace_masked(
    input_ids: np.ndarray, mask: np.ndarray, mask_token_id: int, vocab_size: int,
    rng: np.random.Generator, special: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """BERT's 80/10/10 corruption of the masked positions (torch_mask_tokens given a mask):
    returns (corrupted ids, labels with -100 where nothing is predicted)."""
    labels = np.where(mask, input_ids, -100)
    corrupted = input_ids.copy()
    draw = rng.random(input_ids.shape)
    to_mask = mask & (draw < 0.8)
    to_random = mask & (draw >= 0.8) & (draw < 0.9)
    corrupted[to_mask] = mask_token_id
    corrupted[to_random] = rng.integers(0, vocab_size, size=int(to_random.sum()))
    if special is not None:
        corrupted[special] = input_ids[special]
    return corrupted, labels


def extend_mask(
    groups: list[np.ndarray], mask: np.ndarray, probability: float, rng: np.random.Generator
) -> np.ndarray:
    """A superset of `mask` covering about round(length * p) tokens: further whole words, drawn
    as whole_word_mask draws them (SimLM's decoder mask contains the encoder's)."""
    out = mask.copy()
    budget = min(MAX_PREDICTIONS, max(1, int(round(len(mask) * probability))))
    covered = int(out.sum())
    free = [g for g in groups if not out[g].any()]
    for index in rng.permutation(len(free)):
        if covered >= budget:
            break
        group = free[index]
        if covered + len(group) > budget:
            continue
        out[group] = True
        covered += len(group)
    return out

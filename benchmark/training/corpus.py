"""Pre-training text: BEIR corpora (by task name) or a BEIR corpus.jsonl file -> token spans
with word ids -> pairs of neighbouring spans.

Every objective is fed the same stream of span pairs (A, B) from the same document, so the arms
of a study see identical text in identical order for a given seed; objectives that need one
span at a time (MLM, RetroMAE, ...) use both spans of each pair as independent examples,
CoT-MAE reconstructs each span from its neighbour's [CLS], coCondenser uses the pair as its
positive. A batch is a pure function of (seed, step): resuming needs no sampler state.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark.core.errors import DataError
from benchmark.core.files import sha256_file
from benchmark.datasets.beir import load_corpus, resolve_folder

MIN_SPAN_TOKENS = 8


@dataclass(frozen=True)
class Span:
    """One encoder input: ids with the special tokens, word id per position (-1 = special)."""

    ids: np.ndarray
    words: np.ndarray


@dataclass(frozen=True)
class CorpusSource:
    files: tuple[Path, ...]
    label: str  # what the card records as the corpus

    def fingerprint(self) -> str:
        """sha256 over the files' own sha256 (order-independent names dropped: same bytes, same
        fingerprint wherever the copy lives)."""
        digest = hashlib.sha256()
        for path in self.files:
            digest.update(sha256_file(path).encode())
        return digest.hexdigest()


def resolve_corpus(spec: str, data_dir: Path | None = None) -> CorpusSource:
    """`spec`: a path to a BEIR corpus.jsonl, or task names joined by commas (their corpora)."""
    path = Path(spec)
    if path.suffix == ".jsonl" or path.is_file():
        if not path.is_file():
            raise DataError(f"corpus file {path} does not exist")
        return CorpusSource((path,), path.name)
    from benchmark.catalog.tasks import get_task

    files = []
    for name in [s.strip() for s in spec.split(",") if s.strip()]:
        task = get_task(name)
        files.append(resolve_folder(task, data_dir) / "corpus.jsonl")
    if not files:
        raise DataError(f"--corpus '{spec}' names no task or file")
    return CorpusSource(tuple(files), ",".join(sorted({f.parent.name for f in files})))


def read_texts(source: CorpusSource) -> list[str]:
    """Title + text per document, validated as BEIR corpus jsonl (one-line error otherwise)."""
    texts: list[str] = []
    for path in source.files:
        try:
            corpus = load_corpus(path)
        except DataError as exc:
            raise DataError(
                f"corpus file {path} is not BEIR corpus jsonl (one JSON object per line with "
                f"string '_id' and 'text', optional 'title'): {exc}"
            ) from exc
        texts.extend(f"{d.title} {d.text}".strip() for d in corpus.values())
    return [t for t in texts if t]


def _chunks(ids: list[int], words: list[int], size: int) -> list[tuple[list[int], list[int]]]:
    """Cut a document into pieces of at most `size` tokens, moving each cut back to the start of
    a word so no word is split across spans (a word longer than `size` is cut anyway)."""
    out = []
    start = 0
    while start < len(ids):
        end = min(start + size, len(ids))
        if end < len(ids):
            cut = end
            while cut > start + 1 and words[cut] == words[cut - 1]:
                cut -= 1
            end = cut if cut > start + 1 else end
        out.append((ids[start:end], words[start:end]))
        start = end
    return out


def build_pairs(texts: list[str], tokenizer, max_length: int) -> list[tuple[Span, Span]]:
    """Neighbouring spans (A, B) of each document, each at most `max_length` with specials.

    Consecutive chunks pair up (0,1), (2,3), ...; an odd last chunk pairs with its predecessor;
    a document with a single chunk is split in two at a word boundary (CoT-MAE's "nearby" span
    pairing, and coCondenser's spans of one document); chunks under MIN_SPAN_TOKENS are dropped.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise DataError("pre-training needs a fast tokenizer (word ids for whole-word masking)")
    room = max_length - 2
    if room < 2 * MIN_SPAN_TOKENS:
        raise DataError(f"max length {max_length} leaves no room for a span")
    pairs: list[tuple[Span, Span]] = []
    for start in range(0, len(texts), 1000):
        encoded = tokenizer(texts[start:start + 1000], add_special_tokens=False,
                            return_attention_mask=False, return_token_type_ids=False)
        for i, ids in enumerate(encoded["input_ids"]):
            words = [-1 if w is None else w for w in encoded.word_ids(i)]
            chunks = _chunks(ids, words, room)
            if len(chunks) == 1:
                chunks = _chunks(ids, words, max(MIN_SPAN_TOKENS, (len(ids) + 1) // 2))
            chunks = [c for c in chunks if len(c[0]) >= MIN_SPAN_TOKENS]
            spans = [_span(tokenizer, c) for c in chunks]
            for k in range(0, len(spans) - 1, 2):
                pairs.append((spans[k], spans[k + 1]))
            if len(spans) >= 3 and len(spans) % 2 == 1:
                pairs.append((spans[-2], spans[-1]))
    if not pairs:
        raise DataError("the corpus yields no span pairs (documents too short?)")
    return pairs


def _boundaries(tokenizer) -> tuple[int, int]:
    """The single-sequence template's first and last special tokens: [CLS] x [SEP] for BERT,
    <s> x </s> for RoBERTa (transformers 5 tokenizers no longer expose
    build_inputs_with_special_tokens, so the ids are read from the tokenizer)."""
    first = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    last = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    if first is None or last is None or tokenizer.mask_token_id is None:
        raise DataError(f"{type(tokenizer).__name__} has no [CLS]/[SEP]/[MASK] tokens for MLM pre-training")
    return first, last


def _span(tokenizer, chunk: tuple[list[int], list[int]]) -> Span:
    ids, words = chunk
    first, last = _boundaries(tokenizer)
    return Span(np.asarray([first, *ids, last], dtype=np.int64),
                np.asarray([-1, *words, -1], dtype=np.int64))


class PairStream:
    """Batches of span pairs: epoch e is a seeded permutation of all pairs; step s takes the
    next `pairs_per_step` of the concatenated epochs. Deterministic in (seed, step)."""

    def __init__(self, pairs: list[tuple[Span, Span]], pairs_per_step: int, seed: int) -> None:
        self.pairs = pairs
        self.per_step = pairs_per_step
        self.seed = seed
        self._orders: dict[int, np.ndarray] = {}

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            self._orders = {epoch: np.random.default_rng([self.seed, 7, epoch]).permutation(
                len(self.pairs))}
        return self._orders[epoch]

    def batch(self, step: int) -> list[tuple[Span, Span]]:
        out = []
        n = len(self.pairs)
        for k in range(step * self.per_step, (step + 1) * self.per_step):
            out.append(self.pairs[self._order(k // n)[k % n]])
        return out

    def epochs(self, steps: int) -> float:
        return steps * self.per_step / len(self.pairs)

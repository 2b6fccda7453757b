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


def split_heldout(texts: list[str], share: float) -> tuple[list[str], list[str]]:
    """(trained on, held out): a document is held out when the sha256 of its text falls in the
    first `share` of the hash range. Why the text's hash and no seeded draw: the same documents are
    held out whatever the seed, the corpus's order or the other corpora beside it, so stage 0 and
    every arm that continues it on a sub-corpus never train on one another's held-out text."""
    if not share:
        return texts, []
    if not 0 < share < 1:
        raise DataError(f"held-out share {share} must be between 0 and 1")
    limit = int(share * 2**32)
    kept, held = [], []
    for text in texts:
        bucket = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:4], "big")
        (held if bucket < limit else kept).append(text)
    if not held and len(kept) > 1:  # a small corpus still holds out one document: the lowest hash
        lowest = min(range(len(kept)), key=lambda i: hashlib.sha256(kept[i].encode("utf-8")).digest())
        held.append(kept.pop(lowest))
    if not kept or not held:
        raise DataError(f"a held-out share of {share} leaves {len(kept)} documents to train on and "
                        f"{len(held)} held out")
    return kept, held


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


def _balanced_chunks(ids: list[int], words: list[int], size: int) -> list[tuple[list[int], list[int]]]:
    """Cut a document into the fewest pieces of at most `size` tokens, of about EQUAL length
    (cuts moved back to a word start as _chunks does). Equal pieces make the two spans of a pair
    about as long as each other, so a batch padded to its longest span carries almost no padding:
    with _chunks a 300-token document at 256 gave a 254-token and a 46-token span, and 36% of a
    stage-0 batch was padding (mae-lab-review.md, section 4)."""
    out = []
    start = 0
    while start < len(ids):
        left = len(ids) - start
        target = -(-left // -(-left // size))  # the rest shared evenly over the pieces it needs
        piece = _chunks(ids[start:start + target + 1], words[start:start + target + 1], target)[0]
        out.append(piece)
        start += len(piece[0])
    return out


def build_pairs(texts: list[str], tokenizer, max_length: int,
                balanced: bool = False) -> list[tuple[Span, Span]]:
    """Neighbouring spans (A, B) of each document, each at most `max_length` with specials.

    Consecutive chunks pair up (0,1), (2,3), ...; an odd last chunk pairs with its predecessor;
    a document with a single chunk is split in two at a word boundary (CoT-MAE's "nearby" span
    pairing, and coCondenser's spans of one document); chunks under MIN_SPAN_TOKENS are dropped.
    `balanced`: a document's chunks are of about equal length (_balanced_chunks) instead of full
    ones and a short tail, which packed batches need (the recipe's `packing`).
    """
    cut = _balanced_chunks if balanced else _chunks
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
            chunks = cut(ids, words, room)
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


def pair_length(pair: tuple[Span, Span]) -> int:
    """The width a pair needs in a batch: its longer span."""
    return max(len(pair[0].ids), len(pair[1].ids))


class PackedPairStream:
    """Batches of span pairs that fill a budget of padded positions per step with real tokens.

    Why: a batch of a fixed number of spans padded to max_length was 36% padding at stage 0 and
    13% in the arms (mae-lab-review.md), compute spent on nothing and a token budget that counted
    it. Here each epoch is a seeded permutation of all pairs (as PairStream), cut into windows of
    WINDOW_STEPS steps' worth of pairs; inside a window the pairs are sorted by length and taken
    greedily while (spans x the longest span) stays within `positions_per_step`; the epoch's
    batches are then shuffled (seeded). So a step holds about `positions_per_step` REAL tokens, a
    token budget means real tokens, and padding is a few percent. Short spans make batches of more
    spans, long ones of fewer, as fairseq's max_tokens batching does. Deterministic in (seed,
    step): resuming needs no sampler state. One window of 50 steps: pairs far apart in the
    permutation never share a batch, and batch composition stays random within a length band."""

    WINDOW_STEPS = 50

    def __init__(self, pairs: list[tuple[Span, Span]], positions_per_step: int, seed: int) -> None:
        if positions_per_step < 2 * max(pair_length(p) for p in pairs):
            raise DataError(f"a step of {positions_per_step} positions cannot hold the longest pair "
                            "of spans")
        self.pairs = pairs
        self.positions = positions_per_step
        self.seed = seed
        self.lengths = np.asarray([pair_length(p) for p in pairs], dtype=np.int64)
        self._plans: dict[int, list[np.ndarray]] = {}
        self._starts: list[int] = [0]  # first global step of each planned epoch

    def _plan(self, epoch: int) -> list[np.ndarray]:
        if epoch not in self._plans:
            order = np.random.default_rng([self.seed, 7, epoch]).permutation(len(self.pairs))
            mean = float(self.lengths.mean())
            window = max(1, int(self.WINDOW_STEPS * self.positions / (2 * mean)))
            batches: list[np.ndarray] = []
            for begin in range(0, len(order), window):
                chunk = order[begin:begin + window]
                chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
                current: list[int] = []
                for index in chunk.tolist():
                    width = int(self.lengths[index])  # ascending: the widest so far
                    if current and 2 * (len(current) + 1) * width > self.positions:
                        batches.append(np.asarray(current))
                        current = []
                    current.append(index)
                if current:
                    batches.append(np.asarray(current))
            shuffle = np.random.default_rng([self.seed, 9, epoch]).permutation(len(batches))
            self._plans = {k: v for k, v in self._plans.items() if k >= epoch - 1}
            self._plans[epoch] = [batches[i] for i in shuffle]
        return self._plans[epoch]

    def _locate(self, step: int) -> tuple[int, int]:
        epoch = 0
        while True:
            while len(self._starts) <= epoch + 1:
                last = len(self._starts) - 1
                self._starts.append(self._starts[last] + len(self._plan(last)))
            if step < self._starts[epoch + 1]:
                return epoch, step - self._starts[epoch]
            epoch += 1

    def batch(self, step: int) -> list[tuple[Span, Span]]:
        epoch, index = self._locate(step)
        return [self.pairs[i] for i in self._plan(epoch)[index].tolist()]

    def epochs(self, steps: int) -> float:
        epoch, index = self._locate(max(steps - 1, 0))
        return epoch + (index + 1) / len(self._plan(epoch))

"""`maebench backbone new`: a BERT trained from nothing here: vocabulary, config, random weights.

The MAE papers start from an MLM-pretrained BERT whose [CLS] was never trained for retrieval,
with the MLM head it was pre-trained with. No such checkpoint is reachable offline, so the MAE
lab recreates that setting in miniature: a lower-cased WordPiece vocabulary trained with the
`tokenizers` library on named corpora (never on queries or qrels: only corpus.jsonl files are
read), a BERT config of a declared size, and weights drawn from the seed. The folder is a
`BertForMaskedLM` (encoder + MLM head), so `maebench pretrain --objective mlm` continues it
head included; AutoModel loads the encoder part as any BERT.

Everything is a pure function of (corpus bytes, size, seed): the vocabulary fingerprint and the
config are written into the card's `pretraining:` block, and tests check that two builds with
the same inputs give the same vocabulary and the same weights (which is why the vocabulary is
learnt by learn_wordpiece_vocab rather than tokenizers' trainer: see there).
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from benchmark.catalog.registry import ModelCard
from benchmark.core.errors import MaebenchError, RegistryError
from benchmark.core.paths import checkpoints_dir, models_dir

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# what a maebench backbone card evaluates with before fine-tuning: [CLS] and dot product, as
# every objective trains it; BEIR lengths (64-token queries keep SciFact's long claims whole)
QUERY_MAX_LENGTH = 64
PASSAGE_MAX_LENGTH = 256
# The finished tokenizer (tokenizers' WordPiece, max_input_chars_per_word) maps a longer word to
# [UNK] whole, so such a word can teach the vocabulary nothing; the learner skips it when merging
# (its characters still join the alphabet). Its cost grew with word length x merges: one
# 400,000-character word kept it busy for minutes.
MAX_WORD_CHARS = 100
# Fewer words than this cannot make a vocabulary (a whitespace-only corpus gave a card whose
# vocabulary was the 5 specials); the embedded tiny corpus has about 4,000.
MIN_CORPUS_WORDS = 1000
# Building holds the weights (float32) twice at most: the model, and save_pretrained's copy.
BYTES_PER_PARAMETER = 4
BUILD_COPIES = 2


@dataclass(frozen=True)
class BackboneSize:
    """A BERT size; the default (L4 / H256 / A4 / FFN 1024) is google's BERT-mini shape."""

    layers: int = 4
    hidden: int = 256
    heads: int = 4
    ffn: int = 1024
    max_positions: int = 512
    vocab_size: int = 8192

    def check(self) -> None:
        """Each dimension in its range (one line naming every one that is not); whether the
        whole fits in this machine's memory is check_fits_memory's question."""
        problems = []
        if not 1 <= self.layers <= 48:
            problems.append(f"layers {self.layers} (1..48)")
        if not 8 <= self.hidden <= 16384:
            problems.append(f"hidden {_short(self.hidden)} (8..16384)")
        elif self.heads < 1 or self.heads > self.hidden or self.hidden % self.heads:
            problems.append(f"hidden {self.hidden} must be a multiple of heads {_short(self.heads)}")
        if not 1 <= self.ffn <= 1 << 20:
            problems.append(f"ffn {_short(self.ffn)} (1..{1 << 20})")
        if not 16 <= self.max_positions <= 8192:
            problems.append(f"max positions {self.max_positions} (16..8192)")
        if not len(SPECIAL_TOKENS) + 100 <= self.vocab_size <= 250_000:
            problems.append(f"vocab size {self.vocab_size} (105..250000)")
        if problems:
            raise MaebenchError("backbone size: " + "; ".join(problems))

    def parameters(self) -> int:
        """BertForMaskedLM's parameter count at this size (the decoder tied to the word
        embeddings; the vocabulary at its largest, vocab_size): embeddings, layers, MLM head."""
        h, f, v = self.hidden, self.ffn, self.vocab_size
        embeddings = (v + self.max_positions + 2) * h + 2 * h
        layer = 4 * (h * h + h) + 2 * h + (h * f + f) + (f * h + h) + 2 * h
        head = h * h + h + 2 * h + v
        return embeddings + self.layers * layer + head

    def check_fits_memory(self) -> None:
        """Refuse, before allocating anything, a size whose weights do not fit in the memory
        this process can have (an `--ffn` of 10^11 asked torch for terabytes)."""
        needed = self.parameters() * BYTES_PER_PARAMETER * BUILD_COPIES
        available = available_memory()
        if available is not None and needed > available:
            raise MaebenchError(
                f"backbone size: {self.parameters():,} parameters need about {_gib(needed)} of "
                f"memory to build and save, {_gib(available)} is available (layers {self.layers}, "
                f"hidden {self.hidden}, ffn {self.ffn}, vocab {self.vocab_size})")


def _short(value: int) -> str:
    text = str(value)
    return text if len(text) <= 20 else f"{text[:12]}...({len(text)} digits)"


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"


def available_memory() -> int | None:
    """Bytes this process can still allocate: the kernel's MemAvailable, lowered to what a
    cgroup (v2 or v1) limit leaves; None where neither can be read."""
    found: list[int] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for limit, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                         ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                          "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            cap = Path(limit).read_text().strip()
            if cap.isdigit() and int(cap) < 1 << 60:
                found.append(max(0, int(cap) - int(Path(usage).read_text().strip())))
        except (OSError, ValueError):
            continue
    return min(found) if found else None


class CorpusTooSmall(MaebenchError):
    """The corpus has too little text to learn a vocabulary from."""


@dataclass
class BackboneOptions:
    name: str
    corpus: str
    size: BackboneSize
    seed: int = 0
    min_frequency: int = 2
    data_dir: Path | None = None
    models_dir: Path | None = None
    overwrite: bool = False


def train_tokenizer(texts: list[str], vocab_size: int, min_frequency: int = 2):
    """A lower-cased WordPiece vocabulary (BERT's normaliser and pre-tokeniser) as a
    transformers fast tokenizer, learnt by learn_wordpiece_vocab."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    vocab = learn_wordpiece_vocab(texts, vocab_size, min_frequency)
    built = BertWordPieceTokenizer({token: i for i, token in enumerate(vocab)}, lowercase=True,
                                   strip_accents=None, clean_text=True, handle_chinese_chars=True)
    return BertTokenizerFast(tokenizer_object=built._tokenizer, do_lower_case=True,
                             unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
                             cls_token="[CLS]", mask_token="[MASK]")


def _words(texts: list[str]) -> dict[str, int]:
    """Word counts after BERT's own normaliser and pre-tokeniser (lower case, punctuation split),
    the same ones the finished tokenizer applies."""
    from collections import Counter

    from tokenizers.normalizers import BertNormalizer
    from tokenizers.pre_tokenizers import BertPreTokenizer

    normalizer = BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None,
                                lowercase=True)
    splitter = BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(w for w, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)))
    return dict(counts)


def learn_wordpiece_vocab(texts: list[str], vocab_size: int, min_frequency: int = 2) -> list[str]:
    """BERT-style WordPiece vocabulary by frequency-driven merges ("##" marks a piece inside a
    word), the algorithm of tokenizers' WordPieceTrainer, with every tie broken by the pieces'
    text. Hand-written because that trainer is not deterministic: its hash maps are seeded per
    process and per map, so two trainings on the same texts in one process gave vocabularies
    differing in 6 of 8,192 tokens (SciFact, measured here), and a study's backbone must be a pure
    function of its corpus. Specials first, then the alphabet (sorted), then merges in order."""
    import heapq
    from collections import defaultdict

    counts = _words(texts)
    total = sum(counts.values())
    if total < MIN_CORPUS_WORDS:
        empty = "; its documents are empty or whitespace" if not total else ""
        raise CorpusTooSmall(f"too little text to learn a vocabulary: {total} words (at least "
                             f"{MIN_CORPUS_WORDS}){empty}")
    alphabet_of_long = {p for w in counts if len(w) > MAX_WORD_CHARS
                        for p in (w[0], *(f"##{c}" for c in set(w[1:])))}
    # a fixed order: every later tie is broken by text, never by hashing; words the tokenizer
    # maps to [UNK] whole (longer than MAX_WORD_CHARS) take no part in the merges
    words = sorted(w for w in counts if len(w) <= MAX_WORD_CHARS)
    freq = [counts[w] for w in words]
    pieces = [[w[0], *(f"##{c}" for c in w[1:])] for w in words]
    alphabet = sorted({p for ps in pieces for p in ps} | alphabet_of_long)
    vocab = [*SPECIAL_TOKENS, *alphabet]
    seen = set(vocab)
    pairs: dict[tuple[str, str], int] = defaultdict(int)
    where: dict[tuple[str, str], set[int]] = defaultdict(set)
    for i, ps in enumerate(pieces):
        for pair in zip(ps, ps[1:], strict=False):
            pairs[pair] += freq[i]
            where[pair].add(i)
    heap = [(-n, pair) for pair, n in pairs.items()]
    heapq.heapify(heap)
    while len(vocab) < vocab_size and heap:
        negative, pair = heapq.heappop(heap)
        if pairs.get(pair, 0) != -negative:
            continue  # stale entry: the count changed since it was pushed
        if -negative < min_frequency:
            break
        left, right = pair
        merged = left + right[2:] if right.startswith("##") else left + right
        changed: dict[tuple[str, str], int] = {}
        for i in sorted(where.pop(pair, ())):
            ps, n = pieces[i], freq[i]
            for old in zip(ps, ps[1:], strict=False):
                pairs[old] -= n
                changed[old] = pairs[old]
            out, k = [], 0
            while k < len(ps):
                if k + 1 < len(ps) and ps[k] == left and ps[k + 1] == right:
                    out.append(merged)
                    k += 2
                else:
                    out.append(ps[k])
                    k += 1
            pieces[i] = out
            for new in zip(out, out[1:], strict=False):
                pairs[new] += n
                where[new].add(i)
                changed[new] = pairs[new]
        pairs.pop(pair, None)
        for key, n in changed.items():
            if key != pair and n > 0:
                heapq.heappush(heap, (-n, key))
        if merged not in seen:
            seen.add(merged)
            vocab.append(merged)
    return vocab


def vocabulary_sha256(tokenizer) -> str:
    """sha256 of the vocabulary in id order, one `token<TAB>id` line each."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    return hashlib.sha256("".join(f"{t}\t{i}\n" for t, i in vocab).encode("utf-8")).hexdigest()


def bert_config(size: BackboneSize, tokenizer):
    from transformers import BertConfig

    return BertConfig(
        vocab_size=len(tokenizer), hidden_size=size.hidden, num_hidden_layers=size.layers,
        num_attention_heads=size.heads, intermediate_size=size.ffn,
        max_position_embeddings=size.max_positions, type_vocab_size=2,
        pad_token_id=tokenizer.pad_token_id, architectures=["BertForMaskedLM"],
    )


def build_backbone(texts: list[str], size: BackboneSize, seed: int, min_frequency: int = 2):
    """(BertForMaskedLM with weights drawn from `seed`, its tokenizer)."""
    import torch
    from transformers import BertForMaskedLM

    size.check()
    size.check_fits_memory()  # before the vocabulary (minutes on a big corpus) and the weights
    tokenizer = train_tokenizer(texts, size.vocab_size, min_frequency)
    tokenizer.model_max_length = size.max_positions
    config = bert_config(size, tokenizer)
    torch.manual_seed(seed)
    model = BertForMaskedLM(config)
    model.eval()
    return model, tokenizer


def new_backbone(options: BackboneOptions) -> Path:
    """Train the vocabulary, draw the weights, save them under the maebench home and write the
    card (last, atomically: a card always means finished weights); returns the card's path."""
    import re

    from benchmark.catalog.registry import NAME_PATTERN
    from benchmark.training.corpus import read_texts, resolve_corpus
    from benchmark.training.pretrain import write_card

    name = options.name
    if not re.fullmatch(NAME_PATTERN.rstrip("$"), name):
        raise MaebenchError(f"--name {name!r} must match {NAME_PATTERN}")
    cards = options.models_dir or models_dir()
    target = cards / f"{name}.yaml"
    if target.exists() and not options.overwrite:
        raise MaebenchError(f"card {target} exists; pass --overwrite to replace it")
    options.size.check()
    options.size.check_fits_memory()
    source = resolve_corpus(options.corpus, options.data_dir)
    texts = read_texts(source)
    try:
        model, tokenizer = build_backbone(texts, options.size, options.seed, options.min_frequency)
    except CorpusTooSmall as exc:
        raise CorpusTooSmall(f"corpus {source.label}: {exc}") from None
    folder = _save(model, tokenizer, name, options.overwrite)
    card = backbone_card(options, model, tokenizer, source, folder)
    return write_card(card, cards, options.overwrite)


def _save(model, tokenizer, name: str, overwrite: bool) -> Path:
    final = checkpoints_dir() / name
    if final.exists() and not overwrite:
        raise MaebenchError(f"weights folder {final} exists; pass --overwrite to replace it")
    staged = checkpoints_dir() / f".{name}.backbone-partial"
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    model.save_pretrained(staged)
    tokenizer.save_pretrained(staged)
    if final.exists():
        shutil.rmtree(final)
    staged.rename(final)
    return final


def backbone_card(options: BackboneOptions, model, tokenizer, source, folder: Path) -> ModelCard:
    from benchmark.catalog.weights import SHA256_REVISION, home_checkpoint, weights_sha256
    from benchmark.core.provenance import provenance_fields
    from benchmark.core.validation import validate

    size = options.size
    digest = weights_sha256(folder)
    parameters = sum(p.numel() for p in model.bert.parameters())
    prov = provenance_fields()
    shape = f"L{size.layers}-H{size.hidden}-A{size.heads}"
    card = {
        "name": options.name,
        "display_name": f"BERT {shape} from scratch (vocab {len(tokenizer)}, seed {options.seed})",
        "family": "mae",
        "description": (
            f"A BERT {shape} (FFN {size.ffn}, {size.max_positions} positions) with a lower-cased "
            f"WordPiece vocabulary of {len(tokenizer)} trained on the {source.label} corpus, weights "
            f"drawn from seed {options.seed}: the MAE lab's untrained backbone, made by maebench "
            "backbone new; MLM head included, nothing trained yet."
        ),
        "source": "maebench backbone new (benchmark/training/backbone.py); [CLS] pooling and dot "
                  "product as the MAE objectives train them",
        "license": "Apache-2.0",
        "parameters": parameters,
        "embedding_dim": size.hidden,
        "retriever": {
            "kind": "dense", "encoder": "shared",
            "checkpoint": home_checkpoint(f"checkpoints/{options.name}"),
            "revision": SHA256_REVISION + digest,
            "pooling": "cls", "normalize": False, "similarity": "dot",
            "query_prefix": "", "passage_prefix": "",
            "query_max_length": min(QUERY_MAX_LENGTH, size.max_positions),
            "passage_max_length": min(PASSAGE_MAX_LENGTH, size.max_positions),
            "title": "prepend", "title_separator": " ", "dtype": "float32", "batch_size": 64,
        },
        "pretraining": {
            "objective": "none",
            "corpus": source.label,
            "corpus_fingerprint": source.fingerprint(),
            "seed": options.seed,
            "steps": 0,
            "tokens_seen": 0,
            "weights_sha256": digest,
            "vocabulary_sha256": vocabulary_sha256(tokenizer),
            "mlm_head": True,
            "architecture": {
                "model_type": "bert", "layers": size.layers, "hidden": size.hidden,
                "heads": size.heads, "ffn": size.ffn, "max_positions": size.max_positions,
                "vocab_size": len(tokenizer), "min_frequency": options.min_frequency,
            },
            "hardware": prov["hardware"],
            "versions": prov["versions"],
            "notes": ("vocabulary: WordPiece merges with ties broken by text (deterministic; "
                      "benchmark/training/backbone.py) over BERT's lower-casing normaliser and "
                      "pre-tokeniser, learnt from the corpus documents only (titles and texts; no "
                      "queries, no qrels); weights: BertForMaskedLM's own initialisation under "
                      "torch.manual_seed(seed)"),
        },
        "finetuning": {"stage": "none"},
    }
    return validate(card, ModelCard, f"card {options.name}", RegistryError)

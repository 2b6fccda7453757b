"""Title -> text pairs of task corpora: a fine-tuning source with no queries and no qrels.

Why (../shared/reference/mae-lab-review.md, "Redesign 2"; issue 25): every SciFact and NFCorpus
document has a title and SciFact's claims read like titles, so (title, text) pairs of the corpora
train a retriever in the low-supervision regime where the bottleneck papers report their largest
gains, with about ten times the pairs of SciFact's train qrels and without a single query or
relevance judgement. The source is named like a task, `titles:<task>,<task>` (`maebench finetune
--task titles:scifact,nfcorpus`; a study's `finetune: {source: titles, corpus: ...}`), so the
fine-tuning machinery (work folder, resume, curve, card) serves it unchanged: the pairs become a
TrainData whose "queries" are the titles and whose one positive each is the text (never the title
again: the positive is the text alone, so a title cannot match itself).

Only each task's corpus.jsonl is read (a test runs it with loaders that fail on queries and
qrels). Rules, each counted in the card's record:
- a document whose title is empty, whose text is empty or whose title equals its text (compared
  case- and space-insensitively) gives no pair;
- among documents sharing a title, or a text, the one whose (task, document id) sorts first is
  kept: two rows of one step with the same title or text would be each other's false negative,
  and the order of the corpus files decides nothing;
- a seeded slice of the pairs (HELDOUT_PAIRS, at most a tenth) is held out for the held-out loss
  and top-1 accuracy. Its seed is fixed, not the run's, so every arm and seed of a study is
  validated on the same pairs in the same batches.
Negatives are in-batch only (the recipe's group_size must be 1): chance is ln(pairs per step).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from benchmark.datasets.records import Document
from benchmark.training.negatives import FinetuneDataError, TrainData
from benchmark.training.recipes import FinetuneError, Recipe

PREFIX = "titles"
HELDOUT_PAIRS = 256  # four steps of 64: the held-out loss/accuracy averages four in-batch rankings
HELDOUT_SHARE = 0.1  # at most this share of the pairs is held out (small corpora)
HELDOUT_SEED = 0
SPLIT = "corpus titles"  # what the record's `split` says: no split of queries was read


@dataclass(frozen=True)
class PairsSource:
    """The corpora a `titles:` source names (sorted, each once: the same pairs whatever order
    they are given in)."""

    corpora: tuple[str, ...]

    @property
    def task(self) -> str:
        """The source as a task argument (`titles:nfcorpus,scifact`), as cards record it."""
        return f"{PREFIX}:{','.join(self.corpora)}"

    @property
    def label(self) -> str:
        """The source in a card name (no ':' or ',')."""
        return "-".join((PREFIX, *self.corpora))


def parse_source(task: str) -> PairsSource | None:
    """The pairs source a task argument names, or None for a plain task (no ':')."""
    head, sep, rest = task.partition(":")
    if not sep:
        return None
    if head.strip() != PREFIX:
        raise FinetuneDataError(f"'{task}': unknown training source '{head.strip()}' (a task name, "
                                f"or {PREFIX}:<task>[,<task>...] for the title -> text pairs of "
                                "their corpora)")
    names = sorted({name.strip() for name in rest.split(",") if name.strip()})
    if not names:
        raise FinetuneDataError(f"'{task}' names no corpus; e.g. {PREFIX}:scifact,nfcorpus")
    return PairsSource(tuple(names))


def check_recipe(source: PairsSource, recipe: Recipe) -> None:
    """In-batch negatives only, one stage: a hard negative (group_size > 1) or a stage mined by
    the first model needs a query set to mine for, and chance must stay ln(pairs per step)."""
    if recipe.group_size != 1 or recipe.stages != 1:
        raise FinetuneError(
            f"{source.task} trains with in-batch negatives only: recipe {recipe.name} has "
            f"group_size {recipe.group_size} and {recipe.stages} stage(s); use one with group_size "
            "1 and one stage (e.g. scratch-titles), or --set group_size=1")


def pairs_task(corpus: str | Sequence[str]) -> str:
    """The task argument of the title pairs of `corpus` (task names, a list or comma-joined)."""
    names = corpus.split(",") if isinstance(corpus, str) else list(corpus)
    source = parse_source(f"{PREFIX}:{','.join(str(n) for n in names)}")
    assert source is not None
    return source.task


@dataclass(frozen=True)
class TitlePair:
    pair_id: str  # "<task>/<document id>": the title's query id and the text's document id
    title: str
    text: str


def _key(text: str) -> str:
    return " ".join(text.casefold().split())


def extract_pairs(corpora: dict[str, dict[str, Document]]) -> tuple[list[TitlePair], dict[str, int]]:
    """(pairs in (task, document id) order, documents skipped by reason): see the module's rules."""
    skipped = {"empty_title": 0, "empty_text": 0, "title_is_text": 0, "duplicate_title": 0,
               "duplicate_text": 0}
    titles: set[str] = set()
    texts: set[str] = set()
    pairs: list[TitlePair] = []
    for task in sorted(corpora):
        docs = corpora[task]
        for doc_id in sorted(docs):
            title, text = docs[doc_id].title.strip(), docs[doc_id].text.strip()
            reason = ("empty_title" if not title else "empty_text" if not text
                      else "title_is_text" if _key(title) == _key(text)
                      else "duplicate_title" if _key(title) in titles
                      else "duplicate_text" if _key(text) in texts else None)
            if reason:
                skipped[reason] += 1
                continue
            titles.add(_key(title))
            texts.add(_key(text))
            pairs.append(TitlePair(f"{task}/{doc_id}", title, text))
    return pairs, skipped


def split_held_out(pairs: list[TitlePair]) -> tuple[list[TitlePair], list[TitlePair]]:
    """(trained on, held out): HELDOUT_PAIRS pairs (at most HELDOUT_SHARE of them) drawn with
    HELDOUT_SEED from the pairs in id order, so the slice depends on the corpora alone."""
    count = min(HELDOUT_PAIRS, int(len(pairs) * HELDOUT_SHARE))
    ids = sorted(p.pair_id for p in pairs)
    held = set(random.Random(HELDOUT_SEED).sample(ids, count))
    return [p for p in pairs if p.pair_id not in held], [p for p in pairs if p.pair_id in held]


def _digest(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


@dataclass
class TitlePairs:
    """The pairs of one source, split, with what the card records about them."""

    source: PairsSource
    train: list[TitlePair]
    held_out: list[TitlePair]
    corpora: dict[str, str]  # canonical task name -> sha256 of its corpus.jsonl
    skipped: dict[str, int]
    full: TrainData = field(repr=False)  # every pair (trained on and held out) as a TrainData

    @property
    def held_out_ids(self) -> frozenset[str]:
        return frozenset(p.pair_id for p in self.held_out)

    def train_data(self) -> TrainData:
        """The pairs trained on (held-out ones left out)."""
        held = self.held_out_ids
        return replace(self.full, positives={q: d for q, d in self.full.positives.items()
                                             if q not in held})

    def record(self) -> dict:
        """The card's `finetuning.record.train_data` (catalog.registry.TrainDataRecord): corpora
        fingerprints, pair counts and digests; no queries or qrels file was read, so none has
        a sha256."""
        from benchmark.training.negatives import negatives_digest

        return {
            "task": self.source.task,
            "split": SPLIT,
            "corpus_sha256": self.full.dataset.fingerprints.corpus,
            "queries_sha256": None,
            "qrels_sha256": None,
            "negatives_sha256": negatives_digest({}),  # in-batch only: nothing mined
            "n_queries": len(self.train),
            "n_pairs": len(self.train),
            "held_out_queries": len(self.held_out),
            "pairs": {
                "source": PREFIX,
                "corpora": dict(sorted(self.corpora.items())),
                "pairs": len(self.train),
                "held_out": len(self.held_out),
                "skipped": dict(self.skipped),
                "pairs_sha256": _digest(sorted(p.pair_id for p in self.train)),
                "held_out_sha256": _digest(sorted(p.pair_id for p in self.held_out)),
            },
        }


def load_title_pairs(source: PairsSource, data_dir: Path | None = None) -> TitlePairs:
    """Read each named task's corpus.jsonl (nothing else of its folder) and build the pairs."""
    from benchmark.catalog.tasks import Fingerprints, get_task
    from benchmark.core.files import sha256_file
    from benchmark.datasets.beir import Dataset, load_corpus, resolve_folder

    corpora: dict[str, dict[str, Document]] = {}
    digests: dict[str, str] = {}
    first = None
    for name in source.corpora:
        task = get_task(name)
        if task.is_aggregate:
            raise FinetuneDataError(f"'{source.task}': task '{task.name}' is the mean of its "
                                    "subtasks; name their corpora")
        path = resolve_folder(task, data_dir) / "corpus.jsonl"
        corpora[task.name] = load_corpus(path)
        digests[task.name] = sha256_file(path)
        first = first or (task, path.parent)
    pairs, skipped = extract_pairs(corpora)
    if not pairs:
        raise FinetuneDataError(f"'{source.task}': no document has a title that differs from its "
                                f"text ({skipped})")
    train, held = split_held_out(pairs)
    task, folder = first
    fingerprints = Fingerprints(
        corpus=_digest([f"{name}\t{digests[name]}" for name in sorted(digests)]),
        queries=_digest([f"{p.pair_id}\t{p.title}" for p in pairs]),  # the derived queries
        qrels=_digest([p.pair_id for p in pairs]),  # the derived judgements: one per title
    )
    spec = task.model_copy(update={"name": source.task, "split": SPLIT, "fingerprints": None,
                                   "beir_stats": None})
    dataset = Dataset(spec, folder, {p.pair_id: Document("", p.text) for p in pairs},
                      {p.pair_id: p.title for p in pairs}, {p.pair_id: {p.pair_id: 1} for p in pairs},
                      fingerprints)
    full = TrainData(spec, dataset, {p.pair_id: [p.pair_id] for p in pairs})
    return TitlePairs(source, train, held, digests, skipped, full)

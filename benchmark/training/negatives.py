"""Training data for fine-tuning: the task's train split, hard negatives and the epoch plan.

Negatives are mined by a maebench retriever (stage 1: the `bm25` card; stage 2: the stage-1
model) over the task's own corpus, with every judged positive removed, then sampled with the
seed. Training must never see the evaluation split: a train query that is also judged in the
split the card is evaluated on is refused.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.catalog.tasks import TaskSpec
from benchmark.core.errors import DataError, MaebenchError
from benchmark.core.timing import PhaseTimer
from benchmark.datasets.beir import Dataset, load_beir_folder, load_qrels, resolve_folder

TRAIN_SPLIT = "train"


class FinetuneDataError(MaebenchError):
    """The task cannot provide training data (no train split, overlap with evaluation, ...)."""


@dataclass
class TrainData:
    """The train split: corpus, train queries, their judged positives and fingerprints."""

    task: TaskSpec
    dataset: Dataset
    positives: dict[str, list[str]]  # query id -> judged relevant doc ids (sorted, in the corpus)
    judged: dict[str, set[str]] = field(default_factory=dict)  # every doc judged for the query

    @property
    def query_ids(self) -> list[str]:
        return sorted(self.positives)


def train_split_task(task: TaskSpec) -> TaskSpec:
    """The catalog task, pointed at its train split (the catalog's fingerprints and counts
    describe the evaluation split, so they are dropped rather than reported as a mismatch)."""
    return task.model_copy(update={"split": TRAIN_SPLIT, "fingerprints": None, "beir_stats": None})


def load_train_data(task: TaskSpec, data_dir: Path | None = None) -> TrainData:
    """Load the train split, refusing tasks without one and train/eval query overlap."""
    if task.is_aggregate:
        raise FinetuneDataError(f"task '{task.name}' is the mean of its subtasks; fine-tune on one of them")
    folder = resolve_folder(task, data_dir)
    train_file = folder / "qrels" / f"{TRAIN_SPLIT}.tsv"
    if not train_file.is_file():
        raise FinetuneDataError(
            f"task '{task.name}' has no train split (no {train_file}); pick a task with train qrels "
            "(e.g. msmarco, scifact, nfcorpus)"
        )
    check_no_eval_overlap(task, folder)
    dataset = load_beir_folder(train_split_task(task), folder)
    threshold = task.relevance_threshold
    positives = {
        qid: sorted(d for d, grade in docs.items() if grade >= threshold and d in dataset.corpus)
        for qid, docs in dataset.qrels.items()
    }
    positives = {q: docs for q, docs in positives.items() if docs}
    if not positives:
        raise FinetuneDataError(f"task '{task.name}': the train qrels hold no positive in the corpus")
    judged = {qid: set(docs) for qid, docs in dataset.qrels.items()}
    return TrainData(task, dataset, positives, judged)


def check_no_eval_overlap(task: TaskSpec, folder: Path) -> None:
    """Refuse when a train query is also judged in the evaluation split."""
    if task.split == TRAIN_SPLIT:
        raise FinetuneDataError(f"task '{task.name}' is evaluated on its train split; cannot fine-tune on it")
    eval_file = folder / "qrels" / f"{task.split}.tsv"
    train_queries = set(load_qrels(folder / "qrels" / f"{TRAIN_SPLIT}.tsv"))
    try:
        eval_queries = set(load_qrels(eval_file))
    except DataError:
        return  # no evaluation qrels here: nothing to leak into
    shared = sorted(train_queries & eval_queries)
    if shared:
        raise FinetuneDataError(
            f"task '{task.name}': {len(shared)} train queries are also judged in the "
            f"'{task.split}' split the card is evaluated on (e.g. '{shared[0]}'); refusing to train on them"
        )


def mine_negatives(
    retriever, data: TrainData, depth: int, timer: PhaseTimer | None = None
) -> dict[str, list[str]]:
    """Top-`depth` docs per train query from `retriever` (a maebench retriever: BM25 or a
    dense model), judged positives removed, in rank order (ties by doc id, as evaluation)."""
    from benchmark.evaluation.metrics import canonicalize

    dataset = data.dataset
    queries = {q: dataset.queries[q] for q in data.query_ids}
    view = Dataset(dataset.task, dataset.path, dataset.corpus, queries,
                   {q: dataset.qrels[q] for q in queries}, dataset.fingerprints)
    n_positive = max(len(p) for p in data.positives.values())
    run = retriever.retrieve(view, depth + n_positive, timer or PhaseTimer())
    ranked = canonicalize(run, depth + n_positive)
    mined: dict[str, list[str]] = {}
    for qid in data.query_ids:
        exclude = set(data.positives[qid])
        docs = [d for d, _ in ranked.get(qid, []) if d not in exclude]
        mined[qid] = docs[:depth]
    return mined


def negatives_digest(mined: dict[str, list[str]]) -> str:
    return hashlib.sha256(json.dumps(mined, sort_keys=True).encode()).hexdigest()


def save_negatives(path: Path, mined: dict[str, list[str]]) -> None:
    from benchmark.core.files import atomic_write

    atomic_write(path, json.dumps(mined, sort_keys=True).encode())


MAX_NEGATIVES_BYTES = 1 << 30  # MS MARCO: 500k queries x 200 ids is ~1 GB at most


def load_negatives(path: Path, data: TrainData | None = None) -> dict[str, list[str]] | None:
    """The cached negatives of a run, or None when they must be mined (again). The cache is
    only a cache, so anything that is not what save_negatives wrote for this train data (not a
    regular file, e.g. a FIFO, which is never opened; not JSON; not query -> list of doc ids;
    other queries than the train data's; a document outside the corpus or judged positive) is
    set aside with a warning and mined again: the same seeded mining gives the same negatives,
    so the run ends as a clean one would (before, a damaged cache crashed the trainer)."""
    import os
    import stat

    from benchmark.core.paths import read_text_bounded

    try:
        info = os.stat(path)
    except OSError:
        return None  # not there (or unreadable): mined
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = "not a regular file"
    else:
        try:
            mined = json.loads(read_text_bounded(path, MAX_NEGATIVES_BYTES, "negatives cache",
                                                 error=FinetuneDataError))
            problem = _negatives_problem(mined, data)
        except (MaebenchError, ValueError, RecursionError) as exc:
            problem = str(exc) or type(exc).__name__
    if problem is None:
        return mined
    import logging

    logging.getLogger(__name__).warning("%s: damaged negatives cache (%s); mining again", path, problem)
    return None


def _negatives_problem(mined: object, data: TrainData | None) -> str | None:
    """Why `mined` is not a negatives cache for `data` (None: it is one)."""
    if not isinstance(mined, dict):
        return "not a JSON object"
    for qid, docs in mined.items():
        if not isinstance(docs, list) or not all(isinstance(d, str) for d in docs):
            return f"query {qid!r}: not a list of document ids"
    if data is None:
        return None
    if set(mined) != set(data.positives):
        return "its queries are not this run's train queries"
    corpus = data.dataset.corpus
    for qid, docs in mined.items():
        positives = set(data.positives[qid])
        for doc in docs:
            if doc not in corpus or doc in positives:
                return f"query {qid!r}: document {doc!r} is not a negative in the corpus"
    return None


@dataclass(frozen=True)
class Example:
    """One training row: a query, one positive and group_size-1 negatives (doc ids)."""

    query_id: str
    positive: str
    negatives: tuple[str, ...]


def plan_epochs(
    data: TrainData,
    pools: dict[str, list[str]],
    group_size: int,
    epochs: int,
    queries_per_step: int,
    seed: int,
) -> list[Example]:
    """Every epoch is a fresh seeded permutation of the train queries, each with one positive
    (cycling through its judged positives, as Tevatron) and group_size-1 negatives sampled from
    its pool (with replacement only when the pool is too small). The epoch's last incomplete
    step is dropped, so a query never meets itself in a batch. Rows are in training order: the
    trainer reads them sequentially, so a resumed run sees exactly the rows it would have seen."""
    rng = random.Random(seed)
    order = data.query_ids
    per_epoch = (len(order) // queries_per_step) * queries_per_step
    if per_epoch == 0:
        raise FinetuneDataError(
            f"task '{data.task.name}': {len(order)} train queries, fewer than one step of "
            f"{queries_per_step}; lower queries_per_step (--set queries_per_step=N)"
        )
    plan: list[Example] = []
    for epoch in range(epochs):
        shuffled = order[:]
        rng.shuffle(shuffled)
        for qid in shuffled[:per_epoch]:
            positives = data.positives[qid]
            positive = positives[(epoch + rng.randrange(len(positives))) % len(positives)]
            plan.append(Example(qid, positive, _sample(pools.get(qid, []), group_size - 1, rng, data, qid)))
    return plan


def _sample(pool: list[str], k: int, rng: random.Random, data: TrainData, qid: str) -> tuple[str, ...]:
    if k == 0:
        return ()
    if not pool:
        # no mined negative at all (a query BM25 cannot match): random corpus documents
        corpus = list(data.dataset.corpus)
        pool = [d for d in rng.sample(corpus, min(len(corpus), 4 * k + 8)) if d not in data.positives[qid]]
    if len(pool) >= k:
        return tuple(rng.sample(pool, k))
    return tuple(rng.choice(pool) for _ in range(k))

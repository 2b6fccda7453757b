"""card + task -> retriever -> canonical run -> evaluation -> result file. One call, one result.

The target path is checked before any work starts (an hour of encoding must not end in a
refusal), and nothing is written until the whole result exists, so a crash half way leaves
results/ exactly as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from benchmark.catalog.registry import ModelCard
from benchmark.catalog.tasks import Fingerprints, TaskSpec, get_task
from benchmark.core.errors import ResultError
from benchmark.core.timing import PhaseTimer
from benchmark.datasets.beir import load_beir_folder, resolve_folder
from benchmark.evaluation.metrics import (
    STANDARD_METRICS,
    canonicalize,
    drop_identical_ids,
    evaluate,
    warm_up_in_background,
)
from benchmark.results.result_store import read_result, result_path, run_path, write_result
from benchmark.results.runfiles import encode_run, sha256_bytes
from benchmark.results.schema import ModelInfo, Provenance, Result, RunInfo, TaskInfo
from benchmark.retrievers.options import StoreOptions

log = logging.getLogger(__name__)

# every standard metric must be computed on a ranking at least this deep
MAX_CUTOFF = max(int(m.split("@")[1]) for m in STANDARD_METRICS)


@dataclass
class RunOptions:
    results_dir: Path
    data_dir: Path | None = None
    overwrite: bool = False
    device: str | None = None
    top_k: int = 1000
    store_depth: int = 100
    command: str | None = None
    # facts the caller adds to the result's provenance.runtime (e.g. card_warnings from the
    # card-vs-checkpoint check, the inferred card of a card-free run)
    record: dict | None = None
    # embedding store, encode engine, memory bound and search kind of dense runs (issue 10)
    store: StoreOptions | None = None


def _provenance(timer: PhaseTimer, runtime: dict, command: str | None) -> Provenance:
    from benchmark.core.provenance import provenance_fields

    return Provenance(
        **provenance_fields(), runtime=runtime, timings=timer.rounded(), command=command
    )


def run_task(card: ModelCard, task: TaskSpec, options: RunOptions) -> Path:
    """Evaluate `card` on `task` and store the result; returns the result's path."""
    if options.top_k < MAX_CUTOFF or options.store_depth > options.top_k:
        raise ResultError(
            f"ranking depth {options.top_k} is below the deepest metric cutoff ({MAX_CUTOFF}) "
            f"or the stored run depth ({options.store_depth})"
        )
    from benchmark.core.devices import check_device

    check_device(options.device)  # before any work: `--device cuda` without CUDA is one line
    if task.is_aggregate:
        return _run_aggregate(card, task, options)
    with _claimed(card, task, options) as target:
        return _evaluate_and_store(card, task, options, target)


def _evaluate_and_store(card: ModelCard, task: TaskSpec, options: RunOptions, target: Path) -> Path:
    from benchmark.retrievers import build_retriever

    timer = PhaseTimer()
    # Cheap checks first, so a missing folder or unreachable checkpoint fails in seconds,
    # before a large corpus is parsed.
    folder = resolve_folder(task, options.data_dir)
    warm_up_in_background()  # ranx's compiled kernels load while the model encodes
    with timer.phase("load_model"):
        retriever = build_retriever(card, options.device, options.store)
    with timer.phase("load_data"):  # dense retrievers stream the corpus shard by shard
        dataset = load_beir_folder(task, folder, stream=getattr(retriever, "streams_corpus", False))
    drop_self = "drop_identical_ids" in task.quirks
    raw_run = retriever.retrieve(dataset, options.top_k + int(drop_self), timer)
    if drop_self:
        raw_run = drop_identical_ids(raw_run)
    ranked = canonicalize(raw_run, options.top_k)
    with timer.phase("evaluate"):
        evaluation = evaluate(
            dataset.qrels, ranked, task.evaluation_metrics, task.relevance_threshold
        )
    run_bytes = encode_run(ranked, options.store_depth)
    result = Result(
        model=ModelInfo.from_card(card),
        task=_task_info(
            task,
            fingerprints=dataset.fingerprints,
            n_docs=len(dataset.corpus),
            n_queries=len(dataset.qrels),
            warnings=dataset.warnings,
        ),
        metrics=evaluation.aggregates,
        per_query=evaluation.per_query,
        run=RunInfo(
            file=run_path(target).name, sha256=sha256_bytes(run_bytes), depth=options.store_depth
        ),
        provenance=_provenance(
            timer, {**retriever.describe(), **(options.record or {})}, options.command
        ),
    )
    return write_result(options.results_dir, result, run_bytes, overwrite=options.overwrite)


def _free_target(card: ModelCard, task: TaskSpec, options: RunOptions) -> Path:
    """The result's path, refused before any work when it exists and overwriting was not asked,
    or when results/ cannot be written (a file in the way, read-only, full)."""
    from benchmark.results.result_store import ResultStore

    ResultStore(options.results_dir).check_writable()
    target = result_path(options.results_dir, card.name, task.name)
    if target.exists() and not options.overwrite:
        raise ResultError(f"{target} already exists; pass --overwrite to replace it")
    return target


@contextlib.contextmanager
def _claimed(card: ModelCard, task: TaskSpec, options: RunOptions):
    """_free_target, then hold (model, task) until the result is stored: a second concurrent
    run of the same result is refused at once (benchmark.results.result_store.ResultStore.claim)."""
    from benchmark.results.result_store import ResultStore

    _free_target(card, task, options)
    with ResultStore(options.results_dir).claim(card.name, task.name, options.overwrite) as target:
        yield target


def _task_info(task: TaskSpec, **measured) -> TaskInfo:
    """The catalog's evaluation settings of `task` plus what was measured on its data."""
    return TaskInfo(
        name=task.name,
        split=task.split,
        quirks=list(task.quirks),
        relevance_threshold=task.relevance_threshold,
        **measured,
    )


def _combined_fingerprints(parts: list[Result]) -> Fingerprints | None:
    if any(p.task.fingerprints is None for p in parts):
        return None
    def digest(field: str) -> str:
        joined = "".join(getattr(p.task.fingerprints, field) for p in parts)
        return hashlib.sha256(joined.encode()).hexdigest()
    return Fingerprints(corpus=digest("corpus"), queries=digest("queries"), qrels=digest("qrels"))


def _run_aggregate(card: ModelCard, task: TaskSpec, options: RunOptions) -> Path:
    """Run (or reuse) each subtask, then store their unweighted mean (BEIR's CQADupStack).
    A stored subtask is reused when it may stand in for its run (benchmark.results.reuse, as
    `maebench run` decides), else refused unless overwriting."""
    from benchmark.results.reuse import stored_stand_in

    _free_target(card, task, options)
    parts: list[Result] = []
    timer = PhaseTimer()
    for name in task.subtasks:
        subtask = get_task(name)
        stored = (None if options.overwrite
                  else stored_stand_in(options.results_dir, card, subtask, options.data_dir))
        if stored is None:
            parts.append(read_result(run_task(card, subtask, options)))
        elif stored.why_not is not None:
            raise ResultError(f"{stored.path} {stored.why_not}; --overwrite replaces it")
        else:
            log.info("reusing %s", stored.path)
            parts.append(stored.result)
        for phase, seconds in parts[-1].provenance.timings.items():
            timer.seconds[phase] = timer.seconds.get(phase, 0.0) + seconds
    metrics = {m: sum(p.metrics[m] for p in parts) / len(parts) for m in parts[0].metrics}
    per_query = {
        m: {f"{sub}/{q}": v for sub, p in zip(task.subtasks, parts, strict=True)
            for q, v in p.per_query[m].items()}
        for m in parts[0].per_query
    }
    result = Result(
        model=ModelInfo.from_card(card),
        task=_task_info(
            task,
            fingerprints=_combined_fingerprints(parts),
            n_docs=sum(p.task.n_docs or 0 for p in parts),
            n_queries=sum(p.task.n_queries for p in parts),
            subtasks=list(task.subtasks),
        ),
        metrics=metrics,
        per_query=per_query,
        run=None,
        provenance=_provenance(timer, parts[-1].provenance.runtime, options.command),
    )
    return write_result(options.results_dir, result, None, overwrite=options.overwrite)

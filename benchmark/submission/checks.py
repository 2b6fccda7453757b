"""Checking one submitted result against the data we hold: its identity (the card, the task's
settings, the dataset fingerprints), its metric names, its run file, and every number it claims,
recomputed from that run against our qrels.

Metrics whose cutoff exceeds the stored run depth (R@1000 from a top-100 run) cannot be
recomputed from the run file. For those we check what can be checked -- per query, the value is
a recall in [0, 1] no smaller than the recomputed recall at the run's depth (recall only grows
with the cutoff), the aggregate is the mean of the per-query values -- and the report names
them as "bounds only". A bundle whose run depth reaches the cutoff gets them recomputed exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.catalog.registry import ModelCard
from benchmark.catalog.tasks import TaskSpec
from benchmark.core.errors import MaebenchError
from benchmark.results.result_store import dump_result
from benchmark.results.runfiles import decode_run, sha256_bytes
from benchmark.results.schema import ModelInfo, Result
from benchmark.submission.reading import Limits, SubmissionError, read_bounded, read_bundle_result

TOLERANCE = 1e-6


@dataclass
class CheckedResult:
    """A result that passed every check, with what to write and what could not be recomputed."""

    result: Result
    run_bytes: bytes | None
    bounds_only: list[str] = field(default_factory=list)
    json_bytes: bytes = b""  # serialised during validation; the commit writes these bytes
    existed: bool = False  # a result was stored at validation time (replaced with --replace)
    previous: Result | None = None
    already_stored: bool = False  # the same result and run are stored already (nothing to write)



def _close(a: float, b: float) -> bool:
    return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= TOLERANCE


def _check_identity(origin: str, result: Result, card: ModelCard, task_name: str) -> None:
    from benchmark.catalog.tasks import get_task
    from benchmark.results.identity import same_config

    expected = ModelInfo.from_card(card)
    differing = [
        k for k in ("name", "display_name", "family", "kind", "checkpoint", "revision")
        if getattr(result.model, k) != getattr(expected, k)
    ]
    if not same_config(result.model.config, expected.config):
        differing.append("config")
    if differing:
        raise SubmissionError(
            f"{origin}: field model.{differing[0]}: does not match the bundle's model card"
        )
    if result.task.name != task_name:
        raise SubmissionError(f"{origin}: field task.name: '{result.task.name}' does not match the file name")
    try:
        task = get_task(task_name)
    except MaebenchError as exc:
        raise SubmissionError(f"{origin}: field task.name: {exc}") from exc
    if result.task.split != task.split:
        raise SubmissionError(
            f"{origin}: field task.split: '{result.task.split}' is not the evaluation split "
            f"'{task.split}' of {task.name}"
        )
    if result.task.quirks != list(task.quirks):
        raise SubmissionError(
            f"{origin}: field task.quirks: {result.task.quirks} differ from the catalog's {list(task.quirks)}"
        )
    if result.task.relevance_threshold != task.relevance_threshold:
        raise SubmissionError(f"{origin}: field task.relevance_threshold: differs from the catalog's")
    if result.task.subtasks != list(task.subtasks):
        raise SubmissionError(f"{origin}: field task.subtasks: differ from the catalog's")


def _check_metric_names(origin: str, result: Result, task: TaskSpec) -> None:
    """Exactly the metrics `maebench run` computes for this task (the standard set plus the
    task's own, e.g. MS MARCO's R@50): a submission claims no more and no fewer."""
    expected = list(task.evaluation_metrics)
    if sorted(result.metrics) != sorted(expected):
        raise SubmissionError(f"{origin}: field metrics: expected exactly {expected}")
    if sorted(result.per_query) != sorted(expected):
        raise SubmissionError(f"{origin}: field per_query: expected exactly {expected}")


def _check_claims(
    origin: str,
    result: Result,
    recomputed: dict[str, dict[str, float]],
    query_ids: set[str],
    depth: int | None,
) -> list[str]:
    """Compare claimed per-query scores and aggregates with recomputed ones; returns the
    metrics that could only be bounds-checked (cutoff beyond the run depth)."""
    from benchmark.evaluation.metrics import Metric

    bounds_only = []
    for metric, claimed in result.per_query.items():
        if set(claimed) != query_ids:
            missing = sorted(query_ids - set(claimed))[:3]
            extra = sorted(set(claimed) - query_ids)[:3]
            raise SubmissionError(
                f"{origin}: field per_query.{metric}: query ids differ from the qrels "
                f"(missing {missing}, unexpected {extra})"
            )
        values = list(claimed.values())
        if not all(math.isfinite(v) for v in values):
            raise SubmissionError(f"{origin}: field per_query.{metric}: non-finite score")
        mean = sum(values) / len(values)
        if not _close(mean, result.metrics[metric]):
            raise SubmissionError(
                f"{origin}: field metrics.{metric}: {result.metrics[metric]!r} is not the mean of "
                f"its per-query scores ({mean!r})"
            )
        parsed = Metric.parse(metric)
        exact = depth is None or parsed.cutoff <= depth
        if not exact:
            bounds_only.append(metric)
            floor = recomputed.get(f"R@{depth}") if parsed.measure == "R" else None
            for qid, value in claimed.items():
                low = floor[qid] if floor is not None else 0.0
                if value < low - TOLERANCE or value > 1.0 + TOLERANCE:
                    raise SubmissionError(
                        f"{origin}: field per_query.{metric}.{qid}: {value!r} outside the possible "
                        f"range [{low:.6f}, 1] given the run file"
                    )
            continue
        for qid, value in claimed.items():
            if not _close(value, recomputed[metric][qid]):
                raise SubmissionError(
                    f"{origin}: field per_query.{metric}.{qid}: claimed {value!r}, recomputed "
                    f"{recomputed[metric][qid]!r} from the run file"
                )
    return bounds_only


def _check_run(origin: str, run: dict, dataset, drop_self: bool, depth: int) -> None:
    for qid, ranked in run.items():
        if qid not in dataset.qrels:
            raise SubmissionError(f"{origin}: query '{qid}' is not a query of the evaluation split")
        if len(ranked) > depth:
            raise SubmissionError(
                f"{origin}: query '{qid}' has {len(ranked)} lines, more than run.depth {depth}"
            )
        seen: set[str] = set()
        previous = math.inf
        for doc_id, score in ranked:
            if doc_id not in dataset.corpus:
                raise SubmissionError(f"{origin}: query '{qid}': document '{doc_id}' is not in the corpus")
            if doc_id in seen:
                raise SubmissionError(f"{origin}: query '{qid}': document '{doc_id}' ranked twice")
            if not math.isfinite(score) or score > previous:
                raise SubmissionError(
                    f"{origin}: query '{qid}': scores must be finite and non-increasing by rank"
                )
            if drop_self and doc_id == qid:
                raise SubmissionError(
                    f"{origin}: query '{qid}' retrieves itself (task quirk drop_identical_ids)"
                )
            seen.add(doc_id)
            previous = score


def check_result(
    bundle: Path,
    name: str,
    files: dict[str, int],
    card: ModelCard,
    limits: Limits,
    data_dir: Path | None,
) -> CheckedResult:
    """Validate one <task>.json (and its run file) of a bundle against our data."""
    from benchmark.catalog.tasks import get_task
    from benchmark.datasets.beir import load_dataset
    from benchmark.evaluation.metrics import Metric, evaluate

    path = bundle / name
    origin = str(path)
    task_name = name.removesuffix(".json")
    result = read_bundle_result(path, limits)
    _check_identity(origin, result, card, task_name)
    task = get_task(task_name)
    _check_metric_names(origin, result, task)
    if task.is_aggregate:
        raise SubmissionError(
            f"{origin}: {task_name} is the mean of its subtasks; submit the subtasks and run "
            f"`maebench run --task {task_name}` to aggregate them"
        )
    if result.run is None:
        raise SubmissionError(f"{origin}: field run: a submitted result must include its run file")
    run_name = f"{task_name}.run.gz"
    if result.run.file != run_name:
        raise SubmissionError(f"{origin}: field run.file: must be '{run_name}'")
    if run_name not in files:
        raise SubmissionError(f"{bundle / run_name}: run file missing from the bundle")
    if result.run.depth < limits.min_depth:
        raise SubmissionError(f"{origin}: field run.depth: at least {limits.min_depth} is required")
    run_bytes = read_bounded(bundle / run_name, limits.max_run_bytes)
    if sha256_bytes(run_bytes) != result.run.sha256:
        raise SubmissionError(f"{bundle / run_name}: sha256 does not match field run.sha256 of {name}")
    try:
        run = decode_run(
            run_bytes, str(bundle / run_name), limits.max_run_uncompressed, limits.max_run_lines
        )
    except UnicodeDecodeError as exc:
        raise SubmissionError(f"{bundle / run_name}: not UTF-8 text") from exc
    except MaebenchError as exc:
        raise SubmissionError(str(exc)) from exc

    try:
        dataset = load_dataset(task, data_dir, download=False)
    except MaebenchError as exc:
        raise SubmissionError(
            f"{origin}: cannot verify against our data for {task_name} ({exc}); pass --data-dir"
        ) from exc
    if task.fingerprints is not None and dataset.fingerprints != task.fingerprints:
        raise SubmissionError(
            f"our copy of {task_name} differs from the catalog's fingerprints; cannot verify {origin}"
        )
    if result.task.fingerprints != dataset.fingerprints:
        raise SubmissionError(f"{origin}: field task.fingerprints: computed on different data than ours")
    if (result.task.n_docs, result.task.n_queries) != (len(dataset.corpus), len(dataset.qrels)):
        raise SubmissionError(f"{origin}: field task.n_queries: counts differ from our data")

    _check_run(str(bundle / run_name), run, dataset, "drop_identical_ids" in task.quirks, result.run.depth)
    depth = result.run.depth
    exact_metrics = tuple(m for m in task.evaluation_metrics if Metric.parse(m).cutoff <= depth)
    needed = exact_metrics + ((f"R@{depth}",) if f"R@{depth}" not in exact_metrics else ())
    evaluation = evaluate(dataset.qrels, run, needed, task.relevance_threshold)
    bounds = _check_claims(origin, result, evaluation.per_query, set(dataset.qrels), depth)
    for metric in exact_metrics:
        if not _close(result.metrics[metric], evaluation.aggregates[metric]):
            raise SubmissionError(
                f"{origin}: field metrics.{metric}: claimed {result.metrics[metric]!r}, recomputed "
                f"{evaluation.aggregates[metric]!r}"
            )
    from benchmark.results.schema import with_eval_key

    try:  # the same serialisation the commit does, so --check fails wherever the commit would
        json_bytes = dump_result(with_eval_key(result))
    except (ValueError, RecursionError, TypeError) as exc:
        raise SubmissionError(f"{origin}: cannot be stored ({type(exc).__name__}: {exc})") from exc
    return CheckedResult(result, run_bytes, bounds, json_bytes=json_bytes)

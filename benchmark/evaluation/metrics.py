"""Canonical tie-breaking, then ranx metrics: aggregates and per-query scores.

ranx sorts tied scores in no defined order, while trec_eval / pytrec_eval (and so BEIR and
MTEB) break ties by document id, descending. We therefore sort every run canonically first
(score desc, doc id desc) and hand ranx strictly decreasing rank scores, so ranx cannot reorder
anything and the numbers equal pytrec_eval's exactly (tests/test_evaluate.py checks this).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

STANDARD_METRICS: tuple[str, ...] = ("nDCG@10", "MRR@10", "R@100", "R@1000", "MAP@100")

# our name -> (ranx name, is a binary-relevance metric)
_RANX_NAMES: dict[str, tuple[str, bool]] = {
    "nDCG": ("ndcg", False),
    "MRR": ("mrr", True),
    "R": ("recall", True),
    "MAP": ("map", True),
    "P": ("precision", True),
}


@dataclass(frozen=True)
class Metric:
    """A measure as a value object, e.g. Metric.parse('nDCG@10')."""

    measure: str
    cutoff: int

    @classmethod
    def parse(cls, name: str) -> Metric:
        measure, _, cutoff = name.partition("@")
        if measure not in _RANX_NAMES or not cutoff.isdigit() or int(cutoff) <= 0:
            known = ", ".join(f"{m}@k" for m in _RANX_NAMES)
            raise ValueError(f"unknown metric '{name}' (known: {known})")
        return cls(measure, int(cutoff))

    def __str__(self) -> str:
        return f"{self.measure}@{self.cutoff}"

    def rel_level(self, relevance_threshold: int) -> int:
        """Grade from which a document counts as relevant: the task's threshold for binary
        metrics, 1 for nDCG (which uses every grade as its gain, as trec_eval does)."""
        return relevance_threshold if _RANX_NAMES[self.measure][1] else 1

    def ranx_name(self, relevance_threshold: int) -> str:
        name, binary = _RANX_NAMES[self.measure]
        suffix = f"-l{relevance_threshold}" if binary and relevance_threshold != 1 else ""
        return f"{name}@{self.cutoff}{suffix}"


@dataclass
class Evaluation:
    aggregates: dict[str, float]
    per_query: dict[str, dict[str, float]]  # metric -> query id -> score


RankedList = list[tuple[str, float]]


def canonical_ranking(scores: dict[str, float], depth: int | None = None) -> RankedList:
    """Score descending, ties by doc id descending (trec_eval's order); optionally truncated."""
    for doc_id, score in scores.items():
        if not isinstance(score, (int, float)) or math.isnan(score):
            raise ValueError(f"document '{doc_id}' has a non-numeric score {score!r}")
    ranked = sorted(scores.items(), key=lambda item: (item[1], item[0]), reverse=True)
    return ranked[:depth] if depth is not None else ranked


def canonicalize(run: dict[str, dict[str, float]], depth: int | None = None) -> dict[str, RankedList]:
    return {qid: canonical_ranking(docs, depth) for qid, docs in run.items()}


_WARM_UP: list = []


def warm_up_in_background() -> None:
    """Load numba and ranx's kernels on a daemon thread while the run encodes: a fresh process
    pays ~1-2 s for them (numba's typing registry, scipy's BLAS bindings, the cached machine
    code), and that cost then overlaps the encoding instead of adding to the evaluate phase.
    Idempotent. An evaluate() that starts before it is done simply waits: Python's import lock
    and numba's compiler lock serialise the two."""
    import threading

    if not _WARM_UP:
        thread = threading.Thread(target=_warm_up, name="ranx-warm-up", daemon=True)
        _WARM_UP.append(thread)
        thread.start()


def _warm_up() -> None:
    import contextlib

    # the real evaluation reports any problem; the warm-up stays silent
    with contextlib.suppress(Exception):
        evaluate({"q": {"a": 2, "b": 1}}, {"q": {"a": 1.0, "c": 0.5}}, STANDARD_METRICS, 2)


def _ranx_kernels() -> dict[str, tuple]:
    """measure -> (ranx per-query kernel, extra arguments), imported without running
    ranx/__init__.py (it imports scipy, pandas and matplotlib for plots and statistical tests we
    never use here). The kernels are numba functions compiled with cache=True, so a fresh process
    loads them from ranx's cache in well under a second."""
    import importlib
    import importlib.util
    import sys
    import types

    stub = None
    if "ranx" not in sys.modules:
        spec = importlib.util.find_spec("ranx")
        stub = types.ModuleType("ranx")
        stub.__path__ = list(spec.submodule_search_locations)
        stub.__spec__ = spec
        sys.modules["ranx"] = stub
    try:
        module = {name: importlib.import_module(f"ranx.metrics.{name}")
                  for name in ("ndcg", "recall", "reciprocal_rank", "average_precision",
                               "precision")}
    finally:
        if stub is not None and sys.modules.get("ranx") is stub:
            del sys.modules["ranx"]  # a later `import ranx` runs the real package __init__
    return {
        "nDCG": (module["ndcg"]._ndcg, (True,)),  # jarvelin=True: ranx's "ndcg", trec_eval's
        "MRR": (module["reciprocal_rank"]._reciprocal_rank, ()),
        "R": (module["recall"]._recall, ()),
        "MAP": (module["average_precision"]._average_precision, ()),
        "P": (module["precision"]._precision, ()),
    }


def _arrays(judged: dict[str, int], ranking: RankedList):
    """ranx's per-query inputs: [[doc, grade]] by grade descending and [[doc, score]] in rank
    order, with docs numbered exactly (ranx itself uses hash(doc id) cast to float64)."""
    import numpy as np

    numbers: dict[str, int] = {}
    for doc in judged:
        numbers.setdefault(doc, len(numbers))
    run_array = np.empty((len(ranking), 2), dtype=np.float64)
    for pos, (doc, _) in enumerate(ranking):
        run_array[pos, 0] = numbers.setdefault(doc, len(numbers))
        run_array[pos, 1] = len(ranking) - pos  # strictly decreasing: the canonical order holds
    qrels_array = np.array([[numbers[d], g] for d, g in judged.items()], dtype=np.float64)
    qrels_array = qrels_array.reshape(-1, 2)
    qrels_array = qrels_array[np.argsort(-qrels_array[:, 1], kind="stable")]
    return qrels_array, run_array


def drop_identical_ids(run: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """BEIR/MTEB `ignore_identical_ids`: a query never retrieves itself (ArguAna, Quora, ...)."""
    return {qid: {d: s for d, s in docs.items() if d != qid} for qid, docs in run.items()}


def evaluate(
    qrels: dict[str, dict[str, int]],
    run: dict[str, RankedList] | dict[str, dict[str, float]],
    metrics: tuple[str, ...] = STANDARD_METRICS,
    relevance_threshold: int = 1,
) -> Evaluation:
    """Evaluate every query in `qrels`; a query absent from the run scores 0 on every metric.

    The numbers come from ranx's own per-query kernels (the functions its `evaluate` runs in
    parallel over queries). They are called one query at a time on exact integer doc ids:
    ranx.evaluate would first import ranx's whole package (scipy, pandas, matplotlib: ~4 s),
    build numba typed lists and start its parallel kernels, 5-50 s per fresh process, which
    dwarfed every other phase of a small task. tests/test_evaluate.py checks the result equals
    both ranx.evaluate and pytrec_eval."""
    parsed = [Metric.parse(m) for m in metrics]
    ranked = {
        qid: (docs if isinstance(docs, list) else canonical_ranking(docs))
        for qid, docs in run.items()
    }
    per_query: dict[str, dict[str, float]] = {str(m): {} for m in parsed}
    evaluable = sorted(q for q in qrels if ranked.get(q))
    if evaluable:
        kernels = _ranx_kernels()
        calls = [(str(m), *kernels[m.measure], m.cutoff, m.rel_level(relevance_threshold))
                 for m in parsed]
        with warnings.catch_warnings():
            from numba.core.errors import NumbaTypeSafetyWarning

            # ranx's numba kernels warn about a harmless uint64 -> int64 cast on every call
            warnings.simplefilter("ignore", category=NumbaTypeSafetyWarning)
            for qid in evaluable:
                qrels_array, run_array = _arrays(qrels[qid], ranked[qid])
                for name, kernel, extra, k, rel_lvl in calls:
                    per_query[name][qid] = float(kernel(qrels_array, run_array, k, rel_lvl, *extra))
    for metric in per_query.values():
        for qid in qrels:
            metric.setdefault(qid, 0.0)
    aggregates = {
        name: float(sum(values.values()) / len(values)) if values else 0.0
        for name, values in per_query.items()
    }
    return Evaluation(aggregates, {m: dict(sorted(v.items())) for m, v in per_query.items()})

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


def drop_identical_ids(run: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """BEIR/MTEB `ignore_identical_ids`: a query never retrieves itself (ArguAna, Quora, ...)."""
    return {qid: {d: s for d, s in docs.items() if d != qid} for qid, docs in run.items()}


def evaluate(
    qrels: dict[str, dict[str, int]],
    run: dict[str, RankedList] | dict[str, dict[str, float]],
    metrics: tuple[str, ...] = STANDARD_METRICS,
    relevance_threshold: int = 1,
) -> Evaluation:
    """Evaluate every query in `qrels`; a query absent from the run scores 0 on every metric."""
    from numba.core.errors import NumbaTypeSafetyWarning
    from ranx import Qrels, Run
    from ranx import evaluate as ranx_evaluate

    parsed = [Metric.parse(m) for m in metrics]
    ranked = {
        qid: (docs if isinstance(docs, list) else canonical_ranking(docs))
        for qid, docs in run.items()
    }
    per_query: dict[str, dict[str, float]] = {str(m): {} for m in parsed}
    evaluable = sorted(q for q in qrels if ranked.get(q))
    if evaluable:
        rank_scores = {
            qid: {doc: float(len(ranked[qid]) - pos) for pos, (doc, _) in enumerate(ranked[qid])}
            for qid in evaluable
        }
        ranx_qrels = Qrels({qid: dict(qrels[qid]) for qid in evaluable})
        ranx_run = Run(rank_scores)
        names = [m.ranx_name(relevance_threshold) for m in parsed]
        with warnings.catch_warnings():
            # ranx's numba kernels warn about a harmless uint64 -> int64 cast on every call
            warnings.simplefilter("ignore", category=NumbaTypeSafetyWarning)
            scores = ranx_evaluate(ranx_qrels, ranx_run, names, return_mean=False, threads=1)
        if len(names) == 1:
            scores = {names[0]: scores}
        for metric, name in zip(parsed, names, strict=True):
            values = scores[name]
            for qid, value in zip(evaluable, values, strict=True):
                per_query[str(metric)][qid] = float(value)
    for metric in per_query.values():
        for qid in qrels:
            metric.setdefault(qid, 0.0)
    aggregates = {
        name: float(sum(values.values()) / len(values)) if values else 0.0
        for name, values in per_query.items()
    }
    return Evaluation(aggregates, {m: dict(sorted(v.items())) for m, v in per_query.items()})

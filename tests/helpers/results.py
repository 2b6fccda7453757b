"""Synthetic, schema-valid results and runs (no model runs): for comparisons, the site and the
metric checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmark.catalog.tasks import Fingerprints
from benchmark.comparison.compare import StatsOptions
from benchmark.results.result_store import write_result
from benchmark.results.schema import ModelInfo, Provenance, Result, TaskInfo

FAST = StatsOptions(n_perm=2000, n_boot=2000)
FP = Fingerprints(corpus="a" * 64, queries="b" * 64, qrels="c" * 64)


def make_result(
    model: str,
    task: str,
    scores: np.ndarray | list[float],
    family: str = "contrastive",
    display_name: str | None = None,
    fingerprints: Fingerprints | None = FP,
    split: str = "test",
    quirks: tuple[str, ...] = (),
    timings: dict[str, float] | None = None,
    n_docs: int = 1000,
) -> Result:
    """A synthetic but schema-valid result whose nDCG@10 per query is `scores`."""
    scores = [float(s) for s in scores]
    qids = [f"q{i:04d}" for i in range(len(scores))]
    per_query = {
        "nDCG@10": dict(zip(qids, scores, strict=True)),
        "R@100": {q: min(1.0, s + 0.2) for q, s in zip(qids, scores, strict=True)},
    }
    metrics = {m: float(np.mean(list(v.values()))) for m, v in per_query.items()}
    kind = "bm25" if family == "sparse" else "dense"
    return Result(
        model=ModelInfo(
            name=model,
            display_name=display_name or model.upper(),
            family=family,
            kind=kind,
            checkpoint=None if kind == "bm25" else f"org/{model}",
            config={"kind": kind, "pooling": "mean"} if kind == "dense" else {"kind": kind},
        ),
        task=TaskInfo(
            name=task,
            split=split,
            quirks=list(quirks),
            relevance_threshold=1,
            fingerprints=fingerprints,
            n_docs=n_docs,
            n_queries=len(scores),
        ),
        metrics=metrics,
        per_query=per_query,
        run=None,
        provenance=Provenance(
            maebench="0.1.0",
            versions={"numpy": "2"},
            python="3.11",
            platform="linux",
            hardware={"cpu": "test cpu", "cpu_count": 2, "gpu": None},
            seed=0,
            timings=timings or {"encode_corpus": 2.0, "evaluate": 0.1},
            created_at="2026-01-01T00:00:00+00:00",
        ),
    )


def synthetic_results(results_dir: Path, n_queries: int = 120) -> Path:
    """bm25 (baseline), a clearly better model, and one close to bm25, on two tasks."""
    rng = np.random.default_rng(0)
    for task in ("scifact", "nfcorpus"):
        base = rng.uniform(0, 0.8, n_queries)
        write_result(results_dir, make_result("bm25", task, base, family="sparse",
                                              timings={"index": 0.5}), None)
        write_result(results_dir, make_result("strong", task, np.clip(base + 0.15, 0, 1),
                                              family="mae"), None)
        near = np.clip(base + rng.normal(0, 0.01, n_queries), 0, 1)
        write_result(results_dir, make_result("near", task, near), None)
    return results_dir


def random_qrels_and_run(seed: int, n_queries: int = 40, n_docs: int = 300):
    """Runs with heavy ties (scores from a handful of values) and graded qrels."""
    rng = np.random.default_rng(seed)
    docs = [f"d{i:03d}" for i in range(n_docs)]
    qrels, run = {}, {}
    for q in range(n_queries):
        qid = f"q{q}"
        judged = rng.choice(n_docs, size=rng.integers(1, 12), replace=False)
        qrels[qid] = {docs[i]: int(rng.integers(0, 3)) for i in judged}
        retrieved = rng.choice(n_docs, size=rng.integers(20, 150), replace=False)
        run[qid] = {docs[i]: float(rng.integers(0, 6)) / 2 for i in retrieved}
    return qrels, run

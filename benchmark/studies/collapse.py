"""Is a backbone's [CLS] representation collapsed? Two cheap checks (issue 17 item 7, audit 1.8
and 4.8).

The scifact-dapt bowpred arm collapsed: after 64 steps the mean pairwise cosine of its document
[CLS] vectors went from 0.696 to 0.992 and every query ranked the documents the same way, so its
fine-tuned nDCG@10 of 0.0004 said nothing about BoW prediction. Such a cell must be reported as a
failed run, which needs a diagnostic that takes seconds:

- the mean pairwise cosine of document vectors (excluding each vector with itself): near 1 when
  every input maps to one direction;
- the query independence of a run: the mean pairwise Jaccard overlap of the queries' top-10
  sets. Different queries should retrieve different documents; when the ranking is decided by
  something input-independent (with collapsed vectors, the document norm) every query gets the
  same top 10 and the overlap is near 1.
"""

from __future__ import annotations

from typing import Any

import numpy as np

TOP_K = 10
MAX_QUERIES = 200


def mean_pairwise_cosine(vectors: np.ndarray) -> float:
    """Mean cosine over all ordered pairs i != j, in O(n d) memory and time: with unit rows u_i,
    sum_{i != j} u_i . u_j = |sum u_i|^2 - sum |u_i|^2, so no n x n matrix is built. A zero row
    (no direction) counts as cosine 0 with everything."""
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need a 2-D array of at least 2 vectors (got shape {x.shape})")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    total = unit.sum(axis=0)
    n = x.shape[0]
    return float((total @ total - np.sum(unit * unit)) / (n * (n - 1)))


def _top(scores: dict[str, float], k: int) -> list[str]:
    """The k best documents; ties broken by document id so the result does not depend on dict
    order."""
    return [d for d, _ in sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:k]]


def top_k_overlap(run: dict[str, dict[str, float]], *, k: int = TOP_K,
                  max_queries: int = MAX_QUERIES, seed: int = 0) -> float | None:
    """Mean pairwise Jaccard overlap of the queries' top-k sets over a seeded sample of at most
    `max_queries` queries (all pairs of 200 queries are 19,900 pairs: a 200 x 200 product);
    None with fewer than two queries that retrieved anything."""
    queries = sorted(q for q, scores in run.items() if scores)
    if len(queries) < 2:
        return None
    if len(queries) > max_queries:
        rng = np.random.default_rng(seed)
        queries = sorted(rng.choice(queries, size=max_queries, replace=False).tolist())
    tops = [_top(run[q], k) for q in queries]
    docs = {d: i for i, d in enumerate(sorted({d for top in tops for d in top}))}
    member = np.zeros((len(tops), len(docs)))
    for row, top in enumerate(tops):
        member[row, [docs[d] for d in top]] = 1.0
    inter = member @ member.T
    sizes = member.sum(axis=1)
    jaccard = inter / (sizes[:, None] + sizes[None, :] - inter)
    n = len(tops)
    return float((jaccard.sum() - np.trace(jaccard)) / (n * (n - 1)))


def collapse_diagnostics(
    doc_vectors: np.ndarray,
    run: dict[str, dict[str, float]] | None = None,
    *,
    cosine_threshold: float = 0.98,
    overlap_threshold: float = 0.9,
    seed: int = 0,
) -> dict[str, Any]:
    """{mean_pairwise_cosine, top10_overlap, collapsed, reason}.

    `doc_vectors` are a backbone's document vectors (e.g. [CLS] over `sample_documents`);
    `run` (query -> doc -> score), when given, is that backbone's ranking of the same task.
    Collapsed when the cosine exceeds `cosine_threshold` or the top-10 overlap exceeds
    `overlap_threshold`; `reason` says which, in one line (None when not collapsed).
    """
    cosine = mean_pairwise_cosine(doc_vectors)
    overlap = top_k_overlap(run, seed=seed) if run is not None else None
    reasons = []
    if cosine > cosine_threshold:
        reasons.append(f"mean pairwise cosine of {len(doc_vectors)} document vectors {cosine:.3f} > "
                       f"{cosine_threshold} (every input maps to nearly one vector)")
    if overlap is not None and overlap > overlap_threshold:
        reasons.append(f"mean top-{TOP_K} overlap between queries {overlap:.3f} > {overlap_threshold} "
                       "(the ranking does not depend on the query)")
    return {
        "mean_pairwise_cosine": cosine,
        "top10_overlap": overlap,
        "collapsed": bool(reasons),
        "reason": "; ".join(reasons) if reasons else None,
    }


def sample_documents(corpus_texts: list[str], n: int = 200, seed: int = 0) -> list[int]:
    """Indices (sorted) of a seeded sample of at most `n` documents to encode for the cosine
    check. Empty texts are skipped: they encode to one identical vector each and would push the
    cosine of a healthy model up."""
    candidates = [i for i, text in enumerate(corpus_texts) if text and text.strip()]
    if len(candidates) <= n:
        return candidates
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(candidates, size=n, replace=False))

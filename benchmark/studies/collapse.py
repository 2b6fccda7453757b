"""Is a backbone's [CLS] representation collapsed? Cheap checks that take seconds (issue 17
item 7, audit 1.8 and 4.8).

The scifact-dapt bowpred arm collapsed: after 64 steps the mean pairwise cosine of its document
[CLS] vectors went from 0.696 to 0.992 and every query ranked the documents the same way, so its
fine-tuned nDCG@10 of 0.0004 said nothing about BoW prediction. Such a cell must be reported as a
failed run. What is measured, on a document sample and on the backbone's own run:

- the query independence of the run: the mean pairwise Jaccard overlap of the queries' top-10
  sets. Different queries should retrieve different documents; when the ranking is decided by
  something input-independent every query gets the same top 10 and the overlap is near 1.
- the centred dimensions: the participation ratio (sum l)^2 / sum l^2 of the eigenvalues l of
  the document vectors' covariance, i.e. in how many directions the documents differ. Near 1 the
  documents lie on a line and every query ranks them in one order or its reverse. That is a
  proxy for the run's top-10 overlap and judged only where no run was measured: a ratio near 1
  can come from one dominant direction beside small ones that still decide the ranking. The full
  scratch-mae study measured fine-tuned cells (cosine, normalised vectors) at 1.08-1.44 with
  top-10 overlaps of 0.002-0.006, as query-dependent as rankings get.
- the spread: mean distance of a document vector from the mean vector over the mean vector's
  norm. Below 1e-4 documents differ by little more than float32 rounding of a dot product.
- the mean pairwise cosine of the raw vectors (excluding each vector with itself).

Why the raw cosine alone is not a failure: a dot-product ranking is exactly invariant to a vector
shared by every document (it adds one constant to all of a query's scores), and an MLM-trained
[CLS], which MLM never asks to tell documents apart, is dominated by such a vector. Measured on
the scratch-mae smoke backbones: raw cosine 0.999996, yet 30 centred dimensions (all-MiniLM-L6-v2:
46), spread 0.002, top-10 overlap 0.04 and nDCG@10 30x a random ranking. A cosine above the
threshold is therefore reported as `anisotropic` beside the score; the cell fails when the
geometry or the run shows that the ranking cannot depend on the query.
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


def centred_dimensions(vectors: np.ndarray) -> float:
    """The participation ratio of the covariance spectrum of `vectors` (rows): 1 when all rows
    lie on one line through their mean, d when they spread evenly over d directions."""
    x = np.asarray(vectors, dtype=np.float64)
    centred = x - x.mean(axis=0)
    energy = np.linalg.svd(centred, compute_uv=False) ** 2
    total = float(energy.sum())
    if total <= 0.0:
        return 0.0  # every row identical: no direction at all
    return total * total / float((energy * energy).sum())


def spread(vectors: np.ndarray) -> float:
    """Mean distance of a row from the mean row, over the mean row's norm (inf when the mean is
    the zero vector): how much documents differ relative to what they all share."""
    x = np.asarray(vectors, dtype=np.float64)
    mean = x.mean(axis=0)
    distance = float(np.linalg.norm(x - mean, axis=1).mean())
    norm = float(np.linalg.norm(mean))
    return distance / norm if norm > 0 else float("inf")


# below: the documents lie (nearly) on one line; a second direction with 5% of the first's
# variance already gives 1.1. Not 2: the full scratch-mae stage 0 measures 1.58 with
# query-dependent rankings (top-10 overlap 0.009). Judged only when no run's overlap is known.
MIN_DIMENSIONS = 1.1
MIN_SPREAD = 1e-4  # below: differences between documents are near float32 rounding of the scores


def judge(found: dict[str, Any], *, cosine_threshold: float = 0.98, overlap_threshold: float = 0.9,
          min_dimensions: float = MIN_DIMENSIONS, min_spread: float = MIN_SPREAD) -> dict[str, Any]:
    """{collapsed, reason, anisotropic} from stored measurements, with the given thresholds; a
    measurement that is missing (an older diagnostics file, a backbone without a run) is not
    judged. The centred dimensions stand in for the top-10 overlap only when that is missing: the
    overlap measures the query independence directly. Kept apart from the measuring so a report
    re-judges stored numbers with its spec's thresholds."""
    reasons = []
    overlap = found.get("top10_overlap")
    if overlap is not None and overlap > overlap_threshold:
        reasons.append(f"mean top-{TOP_K} overlap between queries {overlap:.3f} > {overlap_threshold} "
                       "(the ranking does not depend on the query)")
    dims = found.get("centred_dimensions")
    if dims is not None and dims < min_dimensions and overlap is None:
        reasons.append(f"document vectors differ in {dims:.2f} < {min_dimensions:g} directions "
                       "(they lie on one line)")
    share = found.get("spread")
    if share is not None and share < min_spread:
        reasons.append(f"document vectors differ by {share:.1e} < {min_spread:g} of their shared "
                       "vector (at float rounding)")
    cosine = found.get("mean_pairwise_cosine")
    return {
        "collapsed": bool(reasons),
        "reason": "; ".join(reasons) if reasons else None,
        "anisotropic": bool(cosine is not None and cosine > cosine_threshold),
    }


def collapse_diagnostics(
    doc_vectors: np.ndarray,
    run: dict[str, dict[str, float]] | None = None,
    *,
    cosine_threshold: float = 0.98,
    overlap_threshold: float = 0.9,
    min_dimensions: float = MIN_DIMENSIONS,
    seed: int = 0,
) -> dict[str, Any]:
    """{mean_pairwise_cosine, centred_dimensions, spread, top10_overlap, anisotropic, collapsed,
    reason}.

    `doc_vectors` are a backbone's document vectors (e.g. [CLS] over `sample_documents`);
    `run` (query -> doc -> score), when given, is that backbone's ranking of the same task.
    Collapsed (see `judge`) when the queries' top-10 overlap exceeds `overlap_threshold`, or
    (without a run) the documents differ in fewer than MIN_DIMENSIONS directions, or they differ
    by less than MIN_SPREAD;
    `reason` says which, in one line (None when not collapsed). A raw cosine above
    `cosine_threshold` is reported as `anisotropic`, not as a collapse (module docstring).
    """
    found = {
        "mean_pairwise_cosine": mean_pairwise_cosine(doc_vectors),
        "centred_dimensions": centred_dimensions(doc_vectors),
        "spread": spread(doc_vectors),
        "top10_overlap": top_k_overlap(run, seed=seed) if run is not None else None,
    }
    return {**found, **judge(found, cosine_threshold=cosine_threshold,
                             overlap_threshold=overlap_threshold, min_dimensions=min_dimensions)}


def sample_documents(corpus_texts: list[str], n: int = 200, seed: int = 0) -> list[int]:
    """Indices (sorted) of a seeded sample of at most `n` documents to encode for the cosine
    check. Empty texts are skipped: they encode to one identical vector each and would push the
    cosine of a healthy model up."""
    candidates = [i for i, text in enumerate(corpus_texts) if text and text.strip()]
    if len(candidates) <= n:
        return candidates
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(candidates, size=n, replace=False))

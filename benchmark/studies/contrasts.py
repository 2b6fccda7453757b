"""Contrasts between study arms that respect training variance (issue 17, audit section 4.3).

A study arm is scored once per fine-tuning seed, each time on the same queries. Averaging the
seeds first and then bootstrapping (or sign-flipping) over queries treats the seed-to-seed spread
as if it did not exist: two condenser seeds 6.6 nDCG@10 points apart still gave p = 1e-4. The
two-level (hierarchical) bootstrap here resamples both sources of variation: the fine-tuning
seeds within each arm (independently: arm A's seed 0 has nothing to do with arm B's seed 0), then
the queries, jointly for both arms (the same test queries score both arms, so the pairing by
query is kept).

Hand-written, with numpy only, because no library does this layout. `scipy.stats.bootstrap`
resamples along one axis, either independently per sample or with the same indices for all
samples (`paired=True`); it has no second, nested level, so it cannot resample seeds within arms
and then queries across arms. `hierarch` does nested (hierarchical) resampling but for nested
designs; here queries are crossed with arms and seeds, not nested in them. The whole procedure
is a dozen lines of index draws and weighted means, vectorised over replicates.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmark.core.errors import MaebenchError


def _matrix(arm: dict[int, dict[str, float]], queries: list[str]) -> np.ndarray:
    """(seeds x queries) scores, seeds in sorted order."""
    return np.array([[arm[s][q] for q in queries] for s in sorted(arm)], dtype=np.float64)


def _resample_weights(rng: np.random.Generator, n_boot: int, n: int) -> np.ndarray:
    """(n_boot x n) weights of one bootstrap resample each: counts of n draws with replacement
    from n items, divided by n (so a weighted sum is the resample's mean). Used for the few
    seeds; the many queries are gathered by index instead (cheaper than counting them)."""
    draws = rng.integers(0, n, size=(n_boot, n)) + (np.arange(n_boot) * n)[:, None]
    return np.bincount(draws.ravel(), minlength=n_boot * n).reshape(n_boot, n) / n


def _tails(replicates: np.ndarray) -> float:
    """Two-sided bootstrap p-value: twice the smaller tail share at 0, with the +1 correction
    that keeps it above zero for a finite number of replicates."""
    b = replicates.size
    low = (np.count_nonzero(replicates <= 0) + 1) / (b + 1)
    high = (np.count_nonzero(replicates >= 0) + 1) / (b + 1)
    return float(min(1.0, 2 * min(low, high)))


def two_level_contrast(
    a: dict[int, dict[str, float]],
    b: dict[int, dict[str, float]],
    *,
    n_boot: int = 10000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Arm a minus arm b, with a hierarchical-bootstrap interval and p-value.

    `a` and `b` map a fine-tuning seed to {query_id: per-query metric}. The effect is the mean
    over seeds of the per-query scores of a minus that of b, averaged over the queries every
    seed of both arms scored (with paired seeds: the mean over seeds of paired per-query
    differences). Each bootstrap replicate resamples the seeds with replacement within each arm,
    then the queries with replacement (the same queries for both arms), and recomputes the
    effect. The interval is the percentile interval at 1 - alpha; the p-value is two-sided. The
    query-only interval (queries resampled on seed-averaged scores, the test the audit faults)
    is returned beside it, from the same query draws, to show what ignoring seeds costs.

    Like every two-level bootstrap it counts the per-(seed, query) noise at both levels, so it
    errs on the wide side: with no seed effect at all and scores that are pure noise around
    identical models, its interval is about 1.3x the query-only one at 3 seeds; when the models
    differ per query (the usual case) the two are within a few percent. With one seed per arm the
    seed level is degenerate and the two intervals coincide.
    """
    if not a or not b:
        raise MaebenchError("two_level_contrast needs at least one seed in each arm")
    if n_boot < 1 or not 0 < alpha < 1:
        raise MaebenchError(f"n_boot must be >= 1 and alpha in (0, 1) (got {n_boot}, {alpha})")
    common = set.intersection(*(set(scores) for scores in (*a.values(), *b.values())))
    if not common:
        raise MaebenchError("the two arms' seeds share no query")
    queries = sorted(common)
    ma, mb = _matrix(a, queries), _matrix(b, queries)
    n = len(queries)
    rng = np.random.default_rng(seed)
    seed_w_a = _resample_weights(rng, n_boot, ma.shape[0])  # (B, Sa)
    seed_w_b = _resample_weights(rng, n_boot, mb.shape[0])  # (B, Sb)
    picks = rng.integers(0, n, size=(n_boot, n))  # the same query draws for both arms
    # per seed and replicate: that seed's mean over the replicate's queries -> (S, B)
    at_a = np.stack([row[picks].mean(axis=1) for row in ma])
    at_b = np.stack([row[picks].mean(axis=1) for row in mb])
    two_level = np.einsum("rs,sr->r", seed_w_a, at_a) - np.einsum("rs,sr->r", seed_w_b, at_b)
    query_only = (ma.mean(axis=0) - mb.mean(axis=0))[picks].mean(axis=1)
    low, high = alpha / 2, 1 - alpha / 2
    ci = np.quantile(two_level, [low, high])
    ci_query = np.quantile(query_only, [low, high])
    return {
        "diff": float(ma.mean() - mb.mean()),
        "ci_low": float(ci[0]),
        "ci_high": float(ci[1]),
        "p_value": _tails(two_level),
        "n_boot": int(n_boot),
        "n_queries": n,
        "seeds_a": sorted(a),
        "seeds_b": sorted(b),
        "per_seed_a": [float(x) for x in ma.mean(axis=1)],
        "per_seed_b": [float(x) for x in mb.mean(axis=1)],
        "query_only_ci_low": float(ci_query[0]),
        "query_only_ci_high": float(ci_query[1]),
        "method": (f"hierarchical bootstrap ({n_boot} replicates, seed {seed}): fine-tuning seeds "
                   "resampled with replacement within each arm, then queries resampled jointly for "
                   f"both arms; percentile {1 - alpha:.0%} interval; two-sided p = 2 x the smaller "
                   "tail share at 0, (count + 1) / (B + 1)"),
    }


def holm_family(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of one pre-declared family (e.g. each MAE arm vs the MLM control), each with a
    "p_value", returned as copies with "p_holm": Holm's step-down adjustment over that family, so
    the family-wise error rate holds for the family the study declared, not per contrast."""
    from benchmark.evaluation.significance import holm

    adjusted = holm([row["p_value"] for row in rows])
    return [{**row, "p_holm": p} for row, p in zip(rows, adjusted, strict=True)]

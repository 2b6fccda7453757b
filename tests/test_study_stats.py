"""The two-level (seeds within arms, queries across arms) bootstrap of benchmark.studies.contrasts
on simulated per-query scores: reproducible, wider than the query-only interval when seeds vary,
about as wide when they do not, and right about clear and null effects."""

from __future__ import annotations

import time

import numpy as np
import pytest

from benchmark.core.errors import MaebenchError
from benchmark.studies.contrasts import holm_family, two_level_contrast

QUERIES = [f"q{i}" for i in range(300)]


def arm(effect: float, seed_sd: float, rng: np.random.Generator, base: np.ndarray,
        seeds: int = 3, noise: float = 0.2, interaction: float = 0.0) -> dict[int, dict[str, float]]:
    """Per-query scores = the query's difficulty + the arm's effect + the arm's own per-query
    deviation (the same for every seed: which queries this model gets right) + one offset per
    fine-tuning seed (training variance) + per-(seed, query) noise."""
    out = {}
    own = rng.normal(0, interaction, base.size)
    for s in range(seeds):
        offset = rng.normal(0, seed_sd)
        scores = base + effect + own + offset + rng.normal(0, noise, base.size)
        out[s] = dict(zip(QUERIES, scores.tolist(), strict=True))
    return out


@pytest.fixture
def base() -> np.ndarray:
    return np.random.default_rng(123).uniform(0, 1, len(QUERIES))


def test_seeded_and_reproducible(base) -> None:
    rng = np.random.default_rng(0)
    a, b = arm(0.02, 0.03, rng, base), arm(0.0, 0.03, rng, base)
    first = two_level_contrast(a, b, n_boot=2000, seed=7)
    assert two_level_contrast(a, b, n_boot=2000, seed=7) == first
    other = two_level_contrast(a, b, n_boot=2000, seed=8)
    assert other["diff"] == first["diff"] and other["ci_low"] != first["ci_low"]
    assert first["n_queries"] == 300 and first["seeds_a"] == [0, 1, 2] and first["n_boot"] == 2000
    # the effect is the mean over seeds of paired per-query differences
    paired = np.mean([[a[s][q] - b[s][q] for q in QUERIES] for s in range(3)])
    assert first["diff"] == pytest.approx(paired)
    assert first["diff"] == pytest.approx(np.mean(first["per_seed_a"]) - np.mean(first["per_seed_b"]))
    assert "seeds resampled" in first["method"]


def test_seed_variance_widens_the_interval(base) -> None:
    rng = np.random.default_rng(1)
    a, b = arm(0.0, 0.08, rng, base), arm(0.0, 0.08, rng, base)
    out = two_level_contrast(a, b, n_boot=4000)
    two_level = out["ci_high"] - out["ci_low"]
    query_only = out["query_only_ci_high"] - out["query_only_ci_low"]
    assert two_level > 2 * query_only, (two_level, query_only)


def test_no_seed_variance_gives_similar_intervals(base) -> None:
    rng = np.random.default_rng(2)
    a = arm(0.0, 0.0, rng, base, noise=0.05, interaction=0.2)
    b = arm(0.0, 0.0, rng, base, noise=0.05, interaction=0.2)
    out = two_level_contrast(a, b, n_boot=4000)
    two_level = out["ci_high"] - out["ci_low"]
    query_only = out["query_only_ci_high"] - out["query_only_ci_low"]
    # the per-query differences between the models dominate; resampling seeds adds only the
    # per-(seed, query) noise it counts a second time
    assert 0.95 * query_only <= two_level < 1.15 * query_only, (two_level, query_only)


def test_clear_effect_and_null_effect(base) -> None:
    rng = np.random.default_rng(3)
    clear = two_level_contrast(arm(0.15, 0.01, rng, base), arm(0.0, 0.01, rng, base))
    assert clear["ci_low"] > 0 and clear["p_value"] < 0.01
    assert clear["p_value"] >= 1 / (clear["n_boot"] + 1)  # the +1 correction: never exactly 0
    null = two_level_contrast(arm(0.0, 0.03, rng, base), arm(0.0, 0.03, rng, base))
    assert null["ci_low"] < 0 < null["ci_high"]


def test_unpaired_seeds_and_partial_queries(base) -> None:
    rng = np.random.default_rng(4)
    a, b = arm(0.05, 0.02, rng, base, seeds=3), arm(0.0, 0.02, rng, base, seeds=2)
    del a[1]["q0"]  # a query one seed did not score is left out for every seed of both arms
    out = two_level_contrast(a, b, n_boot=500)
    assert out["n_queries"] == 299 and out["seeds_b"] == [0, 1] and len(out["per_seed_a"]) == 3
    single = two_level_contrast({0: a[0]}, {0: b[0]}, n_boot=500)  # no seed level to resample
    assert (single["ci_low"], single["ci_high"]) == pytest.approx(
        (single["query_only_ci_low"], single["query_only_ci_high"]))
    with pytest.raises(MaebenchError, match="share no query"):
        two_level_contrast({0: {"x": 1.0}}, {0: {"y": 1.0}})
    with pytest.raises(MaebenchError, match="at least one seed"):
        two_level_contrast({}, b)


def test_fast_enough(base) -> None:
    rng = np.random.default_rng(5)
    a, b = arm(0.0, 0.02, rng, base), arm(0.0, 0.02, rng, base)
    began = time.perf_counter()
    two_level_contrast(a, b, n_boot=10000)
    assert time.perf_counter() - began < 2.0  # ~0.1 s here; the bound allows for a busy machine


def test_holm_family() -> None:
    rows = [{"arm": "x", "p_value": 0.01}, {"arm": "y", "p_value": 0.04}, {"arm": "z", "p_value": 0.03}]
    out = holm_family(rows)
    assert [r["p_holm"] for r in out] == pytest.approx([0.03, 0.06, 0.06])
    assert out[0]["arm"] == "x" and "p_holm" not in rows[0]  # copies, in the given order
    assert holm_family([]) == []

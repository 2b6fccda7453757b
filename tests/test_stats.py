"""benchmark.evaluation.significance: the paired randomization test, bootstrap, corrections and rank
intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmark.evaluation.significance import (
    TaskScores,
    benjamini_hochberg,
    correct,
    holm,
    paired_test,
    permutations_for,
    rank_intervals,
)


def _scores(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, size=n)


def test_identical_inputs_give_p_one_and_no_effect():
    a = _scores(200, 1)
    c = paired_test(a, a.copy())
    assert c.p_value == 1.0
    assert c.diff == 0.0 and c.ci_low == 0.0 and c.ci_high == 0.0
    assert c.cohens_d == 0.0
    assert (c.wins, c.ties, c.losses) == (0, 200, 0)


def test_p_values_are_reproducible_across_calls():
    a, b = _scores(300, 2), _scores(300, 3)
    first = paired_test(a, b)
    second = paired_test(a, b)  # the permutations are drawn again from the seed
    assert first == second
    assert paired_test(a, b, seed=1).p_value != first.p_value or first.p_value == 1 / 10_001


def test_result_of_a_pair_does_not_depend_on_other_models():
    """The integer trick makes the sums exact, so batching with other models changes nothing."""
    rng = np.random.default_rng(4)
    matrix = rng.uniform(0, 1, size=(6, 250))
    wide = TaskScores("t", "m", [f"m{i}" for i in range(6)], matrix).compare([("m0", "m3")])[0]
    narrow = TaskScores("t", "m", ["m0", "m3"], matrix[[0, 3]]).compare([("m0", "m3")])[0]
    assert wide == narrow


def test_clear_difference_is_significant():
    a = _scores(100, 5)
    b = np.clip(a - 0.1 + np.random.default_rng(6).normal(0, 0.02, 100), 0, 1)
    c = paired_test(a, b)
    assert c.p_value == pytest.approx(1 / 10_001)  # no permutation reaches the observed mean
    assert c.diff > 0.05 and c.ci_low > 0 and c.ci_high > c.ci_low
    assert c.cohens_d is not None and c.cohens_d > 2
    assert c.wins > 90


def test_p_value_matches_exact_enumeration_on_small_sample():
    """With 8 queries the sign-flip distribution can be enumerated (256 sign vectors)."""
    a = np.array([0.9, 0.4, 0.7, 0.5, 0.8, 0.3, 0.6, 0.65])
    b = np.array([0.5, 0.5, 0.4, 0.5, 0.6, 0.2, 0.7, 0.30])
    d = a - b
    signs = np.array([[1 if (k >> i) & 1 else -1 for i in range(8)] for k in range(256)])
    exact = np.mean(np.abs(signs @ d) >= abs(d.sum()) - 1e-12)
    c = paired_test(a, b, n_perm=50_000)
    assert c.p_value == pytest.approx(exact, abs=0.01)
    assert (c.wins, c.ties, c.losses) == (5, 1, 2)


def test_cohens_d_is_paired_standardized_mean_difference():
    a = np.array([0.5, 0.6, 0.7, 0.8])
    b = np.array([0.4, 0.6, 0.5, 0.9])
    d = a - b
    c = paired_test(a, b, n_perm=1000, n_boot=1000)
    assert c.cohens_d == pytest.approx(d.mean() / d.std(ddof=1), rel=1e-5)
    assert c.diff == pytest.approx(d.mean(), abs=1e-6)


def test_holm_against_hand_computed_example():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.06
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_benjamini_hochberg_against_hand_computed_example():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005*4/1=0.02, 0.01*4/2=0.02, 0.03*4/3=0.04, 0.04*4/4=0.04
    assert benjamini_hochberg(p) == pytest.approx([0.02, 0.04, 0.04, 0.02])
    # step-up: a large early p is pulled down by a later smaller scaled one
    assert benjamini_hochberg([0.02, 0.03, 0.035]) == pytest.approx([0.035, 0.035, 0.035])


def test_correct_fills_both_adjustments():
    rng = np.random.default_rng(7)
    table = TaskScores("t", "m", ["a", "b", "c"], rng.uniform(0, 1, size=(3, 80)))
    corrected = correct(table.compare([("a", "b"), ("a", "c"), ("b", "c")]))
    for c in corrected:
        assert c.p_holm is not None and c.p_bh is not None
        assert c.p_value <= c.p_bh <= c.p_holm <= 1.0


def test_rank_intervals_separate_clear_and_overlapping_models():
    rng = np.random.default_rng(8)
    base = rng.uniform(0, 1, size=300)
    matrix = np.vstack([
        np.clip(base + 0.2, 0, 1),  # clearly best
        base + rng.normal(0, 0.01, 300),  # two indistinguishable models
        base + rng.normal(0, 0.01, 300),
    ])
    table = TaskScores("t", "m", ["best", "x", "y"], matrix)
    low, high = rank_intervals([table.bootstrap_means()])
    assert (low[0], high[0]) == (1, 1)
    assert low[1] == 2 and high[1] == 3 and low[2] == 2 and high[2] == 3


def test_nonfinite_scores_are_rejected():
    with pytest.raises(ValueError):
        paired_test([0.1, math.nan], [0.2, 0.3])


def test_permutations_grow_with_the_family():
    assert permutations_for(10, 0.05) == 10_000
    assert permutations_for(780, 0.05) == 32_000  # 40 models, all pairs
    # with that many flips a clear difference survives Holm over 780 comparisons
    assert 780 / (permutations_for(780, 0.05) + 1) < 0.05


def test_subset_with_more_permutations_extends_the_same_flips():
    rng = np.random.default_rng(9)
    matrix = rng.uniform(0, 1, size=(5, 300))
    names = [f"m{i}" for i in range(5)]
    small = TaskScores("t", "m", names, matrix, n_perm=3000)
    grown = small.subset(["m4", "m1"], 7000)
    direct = TaskScores("t", "m", ["m4", "m1"], matrix[[4, 1]], n_perm=7000)
    assert np.array_equal(grown.perm_sums, direct.perm_sums)
    assert np.array_equal(grown.perm_sums[:, :3000], small.perm_sums[[4, 1]])
    assert grown.compare([("m4", "m1")]) == direct.compare([("m4", "m1")])

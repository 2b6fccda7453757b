"""Collapse diagnostics (benchmark.studies.collapse): a backbone whose document vectors point one
way, or whose ranking ignores the query, is flagged; healthy-looking ones are not."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.studies.collapse import (
    centred_dimensions,
    collapse_diagnostics,
    judge,
    mean_pairwise_cosine,
    sample_documents,
    spread,
    top_k_overlap,
)


def test_mean_pairwise_cosine_matches_the_matrix() -> None:
    x = np.random.default_rng(0).normal(size=(50, 16))
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    full = unit @ unit.T
    expected = (full.sum() - np.trace(full)) / (50 * 49)
    assert mean_pairwise_cosine(x) == pytest.approx(expected)
    assert mean_pairwise_cosine(np.vstack([x[:2], np.zeros((1, 16))])) == pytest.approx(
        float(unit[0] @ unit[1]) / 3)  # a zero row counts as cosine 0


def test_vectors_on_one_line_are_flagged() -> None:
    rng = np.random.default_rng(1)
    common = rng.normal(size=64)
    vectors = common + 0.01 * rng.normal(size=(200, 64))
    vectors *= rng.uniform(0.5, 2.0, size=(200, 1))  # norms differ; direction does not
    out = collapse_diagnostics(vectors)
    assert out["collapsed"] and out["mean_pairwise_cosine"] > 0.99 and out["anisotropic"]
    assert out["centred_dimensions"] < 1.1 and out["top10_overlap"] is None
    assert "one line" in out["reason"] and "\n" not in out["reason"]


def test_a_shared_offset_is_anisotropy_not_collapse() -> None:
    """An MLM [CLS]: one large vector shared by every document plus small differences in many
    directions. The raw cosine is ~1, yet dot-product rankings are those of the differences
    alone, and they depend on the query."""
    rng = np.random.default_rng(5)
    offset = 100.0 * rng.normal(size=64)
    differences = rng.normal(size=(200, 64))
    vectors = offset + differences
    queries = rng.normal(size=(30, 64))
    scores, alone = queries @ vectors.T, queries @ differences.T
    assert all((np.argsort(-a)[:10] == np.argsort(-b)[:10]).all() for a, b in zip(scores, alone, strict=True))
    run = {f"q{i}": {f"d{j}": float(x) for j, x in enumerate(row)} for i, row in enumerate(scores)}
    out = collapse_diagnostics(vectors, run)
    assert out["mean_pairwise_cosine"] > 0.99 and out["anisotropic"]
    assert out["centred_dimensions"] > 30 and out["top10_overlap"] < 0.2
    assert not out["collapsed"] and out["reason"] is None


def test_differences_at_float_rounding_are_flagged() -> None:
    rng = np.random.default_rng(6)
    vectors = rng.normal(size=64) + 1e-6 * rng.normal(size=(100, 64))
    assert spread(vectors) < 1e-4
    out = collapse_diagnostics(vectors)
    assert out["collapsed"] and "float rounding" in out["reason"]


def test_centred_dimensions_counts_directions() -> None:
    rng = np.random.default_rng(7)
    assert centred_dimensions(rng.normal(size=(4000, 8))) == pytest.approx(8, rel=0.05)
    line = np.outer(rng.normal(size=300), rng.normal(size=16)) + 5.0
    assert centred_dimensions(line) == pytest.approx(1.0)
    assert centred_dimensions(np.ones((5, 3))) == 0.0


def test_judge_uses_the_given_thresholds_and_skips_missing_measures() -> None:
    stored = {"mean_pairwise_cosine": 0.995, "top10_overlap": 0.5}  # an older entry: no geometry
    assert judge(stored, overlap_threshold=0.3)["collapsed"]
    assert not judge(stored, overlap_threshold=0.6)["collapsed"]
    assert judge(stored, cosine_threshold=0.98, overlap_threshold=0.6)["anisotropic"]
    assert judge({"centred_dimensions": 1.5}, min_dimensions=2.0)["collapsed"]
    assert not judge({"centred_dimensions": 1.5}, min_dimensions=1.0)["collapsed"]


def test_random_vectors_and_varied_rankings_are_not_flagged() -> None:
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(200, 64))
    run = {f"q{i}": {f"d{j}": float(s) for j, s in enumerate(rng.normal(size=100))} for i in range(30)}
    out = collapse_diagnostics(vectors, run)
    assert not out["collapsed"] and out["reason"] is None
    assert abs(out["mean_pairwise_cosine"]) < 0.05 and out["top10_overlap"] < 0.2


def test_identical_rankings_are_flagged() -> None:
    rng = np.random.default_rng(3)
    doc_scores = rng.normal(size=100)  # the score depends on the document only
    run = {f"q{i}": {f"d{j}": float(s + 1e-9 * i) for j, s in enumerate(doc_scores)} for i in range(300)}
    out = collapse_diagnostics(rng.normal(size=(20, 8)), run)
    assert out["top10_overlap"] == pytest.approx(1.0)
    assert out["collapsed"] and "ranking does not depend on the query" in out["reason"]
    assert "cosine" not in out["reason"]


def test_overlap_sampling_is_seeded_and_bounded() -> None:
    rng = np.random.default_rng(4)
    run = {f"q{i}": {f"d{j}": float(s) for j, s in enumerate(rng.normal(size=40))} for i in range(500)}
    assert top_k_overlap(run, seed=0) == top_k_overlap(run, seed=0)
    assert top_k_overlap(run, seed=0) != top_k_overlap(run, seed=1)  # a sample of 200 of 500
    assert top_k_overlap({"q": {"d": 1.0}}) is None
    # Jaccard of two top-10 sets sharing 5 documents: 5 / 15
    half = {"a": {f"d{j}": 20.0 - j for j in range(10)}, "b": {f"d{j}": 20.0 - j for j in range(5, 15)}}
    assert top_k_overlap(half) == pytest.approx(5 / 15)


def test_sample_documents() -> None:
    texts = [f"doc {i}" if i % 7 else "" for i in range(1000)]
    picked = sample_documents(texts, n=200, seed=0)
    assert len(picked) == 200 and picked == sorted(set(picked))
    assert all(texts[i] for i in picked)  # empty documents are never sampled
    assert picked == sample_documents(texts, n=200, seed=0) != sample_documents(texts, n=200, seed=1)
    assert sample_documents(["a", " ", "b"], n=200) == [0, 2]


def test_the_line_test_stands_in_for_the_overlap_only_when_no_run_was_measured() -> None:
    """One dominant direction beside small ones that still decide the ranking: a fine-tuned
    scratch-mae cell measured 1.08 centred dimensions with top-10 overlap 0.0046."""
    measured = {"centred_dimensions": 1.08, "top10_overlap": 0.0046, "spread": 0.34}
    assert not judge(measured, overlap_threshold=0.3, min_dimensions=1.1)["collapsed"]
    without_run = {"centred_dimensions": 1.08, "top10_overlap": None, "spread": 0.34}
    verdict = judge(without_run, overlap_threshold=0.3, min_dimensions=1.1)
    assert verdict["collapsed"] and "one line" in verdict["reason"]
    rng = np.random.default_rng(7)
    dominant = rng.normal(size=(200, 1)) * 10.0 * rng.normal(size=64)  # one strong direction
    vectors = dominant + rng.normal(size=(200, 64))  # plus many small ones
    queries = rng.normal(size=(40, 64))
    queries -= np.outer(queries @ dominant[0], dominant[0]) / (dominant[0] @ dominant[0])
    run = {f"q{i}": {f"d{j}": float(x) for j, x in enumerate(row)}
           for i, row in enumerate(queries @ vectors.T)}
    out = collapse_diagnostics(vectors, run, overlap_threshold=0.3)
    assert out["centred_dimensions"] < 1.1 and out["top10_overlap"] < 0.2 and not out["collapsed"]

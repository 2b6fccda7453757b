"""Sharded exact search returns the same top-k as one brute-force matrix product."""

from __future__ import annotations

import numpy as np
import pytest

from benchmark.retrievers.search import StreamingTopK, exact_top_k


@pytest.mark.parametrize("shard_size", [7, 50, 1000])
def test_sharded_top_k_equals_brute_force(shard_size):
    rng = np.random.default_rng(0)
    queries = rng.standard_normal((13, 16)).astype(np.float32)
    corpus = rng.standard_normal((333, 16)).astype(np.float32)
    scores, indices = exact_top_k(queries, corpus, k=20, shard_size=shard_size)
    full = queries @ corpus.T
    expected = np.argsort(-full, axis=1)[:, :20]
    np.testing.assert_array_equal(indices, expected)
    np.testing.assert_allclose(scores, np.take_along_axis(full, expected, axis=1), rtol=1e-5)


def test_k_larger_than_corpus_returns_every_document_once():
    rng = np.random.default_rng(1)
    top = StreamingTopK(rng.standard_normal((2, 4)), k=50)
    top.add_shard(rng.standard_normal((3, 4)))
    top.add_shard(rng.standard_normal((4, 4)))
    scores, indices = top.result()
    assert indices.shape == (2, 7)
    assert sorted(indices[0].tolist()) == list(range(7))
    assert np.all(np.diff(scores, axis=1) <= 0)


def test_dimension_mismatch_is_refused():
    top = StreamingTopK(np.zeros((1, 4)), k=1)
    with pytest.raises(ValueError, match="different dimensions"):
        top.add_shard(np.zeros((2, 5)))


def test_non_finite_embeddings_are_refused_not_mis_ranked():
    from benchmark.core.errors import MaebenchError

    corpus = np.ones((5, 4), dtype=np.float32)
    corpus[3, 1] = np.nan
    message = r"1 document embedding\(s\) contain NaN or inf \(first at row 3\)"
    with pytest.raises(MaebenchError, match=message):
        exact_top_k(np.ones((2, 4)), corpus, k=3, shard_size=2)
    with pytest.raises(MaebenchError, match="query embedding"):
        StreamingTopK(np.full((1, 4), np.inf), k=1)

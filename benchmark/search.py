"""Exact top-k inner-product search with memory bounded by the shard size, not the corpus.

The corpus is encoded and searched shard by shard and a running top-k is merged, so the full
corpus embedding matrix never has to fit in memory (MS MARCO at 768-d fp32 would need 27 GB).
faiss' flat index does the blocked matrix product; similarities are always computed in fp32.
"""

from __future__ import annotations

import numpy as np

from benchmark.errors import MaebenchError


def _finite(embeddings: np.ndarray, what: str, offset: int = 0) -> np.ndarray:
    """NaN/inf embeddings (e.g. a float16 overflow) would make faiss return label -1, which
    would silently turn into a real document index; refuse them instead."""
    bad = ~np.isfinite(embeddings).all(axis=-1) if embeddings.size else np.zeros(0, dtype=bool)
    if bad.any():
        raise MaebenchError(
            f"{int(bad.sum())} {what} embedding(s) contain NaN or inf (first at row "
            f"{offset + int(np.flatnonzero(bad)[0])}); try dtype float32 in the card"
        )
    return embeddings


class StreamingTopK:
    """Keeps, for every query, the k best (score, global document index) pairs seen so far."""

    def __init__(self, queries: np.ndarray, k: int) -> None:
        if k <= 0:
            raise ValueError("k must be positive")
        self.queries = _finite(np.ascontiguousarray(queries, dtype=np.float32), "query")
        self.k = k
        n = len(self.queries)
        self.scores = np.full((n, 0), -np.inf, dtype=np.float32)
        self.indices = np.full((n, 0), -1, dtype=np.int64)
        self.seen = 0

    def add_shard(self, shard: np.ndarray) -> None:
        import faiss

        shard = _finite(np.ascontiguousarray(shard, dtype=np.float32), "document", self.seen)
        if shard.ndim != 2 or shard.shape[1] != self.queries.shape[1]:
            raise ValueError("shard and query embeddings have different dimensions")
        index = faiss.IndexFlatIP(shard.shape[1])
        index.add(shard)
        k = min(self.k, len(shard))
        scores, local = index.search(self.queries, k)
        self._merge(scores, local.astype(np.int64) + self.seen)
        self.seen += len(shard)

    def _merge(self, scores: np.ndarray, indices: np.ndarray) -> None:
        all_scores = np.concatenate([self.scores, scores], axis=1)
        all_indices = np.concatenate([self.indices, indices], axis=1)
        k = min(self.k, all_scores.shape[1])
        if all_scores.shape[1] > k:
            keep = np.argpartition(-all_scores, k - 1, axis=1)[:, :k]
            all_scores = np.take_along_axis(all_scores, keep, axis=1)
            all_indices = np.take_along_axis(all_indices, keep, axis=1)
        self.scores, self.indices = all_scores, all_indices

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(scores, indices) per query, best first; ties are broken later, by doc id."""
        order = np.argsort(-self.scores, axis=1, kind="stable")
        return (
            np.take_along_axis(self.scores, order, axis=1),
            np.take_along_axis(self.indices, order, axis=1),
        )


def exact_top_k(
    queries: np.ndarray, corpus: np.ndarray, k: int, shard_size: int = 100_000
) -> tuple[np.ndarray, np.ndarray]:
    top = StreamingTopK(queries, k)
    for start in range(0, len(corpus), shard_size):
        top.add_shard(corpus[start : start + shard_size])
    return top.result()

"""Exact top-k inner-product search with memory bounded by the shard size, not the corpus.

The corpus is encoded and searched shard by shard and a running top-k is merged, so the full
corpus embedding matrix never has to fit in memory (MS MARCO at 768-d fp32 would need 27 GB).
faiss' flat index does the blocked matrix product; similarities are always computed in fp32.
"""

from __future__ import annotations

import numpy as np

from benchmark.core.errors import MaebenchError


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


_GPU: list = []


def _gpu_resources():
    """faiss GPU resources when this faiss build has GPU support and sees a GPU, else None
    (faiss-cpu, the default dependency, never does; `pip install faiss-gpu-cu12` enables it)."""
    if not _GPU:
        import faiss

        usable = hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
        _GPU.append(faiss.StandardGpuResources() if usable else None)
    return _GPU[0]


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
        k = min(self.k, len(shard))
        resources = _gpu_resources()
        if resources is not None:  # faiss-gpu installed and a GPU visible: brute force there
            scores, local = faiss.knn_gpu(
                resources, self.queries, shard, k, metric=faiss.METRIC_INNER_PRODUCT
            )
        else:
            index = faiss.IndexFlatIP(shard.shape[1])
            index.add(shard)
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


def _ann_index(kind: str, dim: int, n_total: int, first_shard: np.ndarray, k: int):
    """An HNSW or IVF inner-product index (faiss). HNSW: M=32, efConstruction 200, efSearch
    max(k, 256); IVF: 4*sqrt(n) lists trained on the first shard, nprobe = lists/8."""
    import faiss

    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 200
        index.hnsw.efSearch = max(k, 256)
        return index, {"index": "HNSW32,Flat", "ef_construction": 200, "ef_search": max(k, 256)}
    nlist = max(1, min(int(4 * n_total**0.5), len(first_shard) // 39))
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    index.train(np.ascontiguousarray(first_shard, dtype=np.float32))
    index.nprobe = max(1, nlist // 8)
    return index, {"index": f"IVF{nlist},Flat", "nprobe": index.nprobe}


def approximate_search(
    kind: str, queries: np.ndarray, k: int, n_shards: int, shard_vectors, reload_shard,
    sample_size: int, timer,
) -> tuple[tuple[np.ndarray, np.ndarray], dict]:
    """ANN top-k over every shard (opt-in: the index holds all vectors, so memory is not
    bounded by a shard), then exact search on a seeded sample of queries to measure the
    recall@k of the approximate top-k against the exact one. Returns the result and the label
    stored in the result's provenance."""
    queries = _finite(np.ascontiguousarray(queries, dtype=np.float32), "query")
    index = None
    sizes: list[int] = []
    info: dict = {}
    for i in range(n_shards):
        vectors = np.ascontiguousarray(shard_vectors(i), dtype=np.float32)
        with timer.phase("index"):
            if index is None:
                index, info = _ann_index(kind, queries.shape[1], len(vectors) * n_shards, vectors, k)
            index.add(vectors)
        sizes.append(len(vectors))
    with timer.phase("search"):
        scores, labels = index.search(queries, k)
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(len(queries), size=min(sample_size, len(queries)), replace=False))
    with timer.phase("ann_recall_check"):
        exact = StreamingTopK(queries[sample], k)
        for i in range(n_shards):
            vectors = reload_shard(i)
            if vectors is None:  # dropped as corrupt since the first pass: the check cannot run
                raise MaebenchError(f"embedding store shard {i} changed during the search")
            exact.add_shard(vectors)
        _, exact_labels = exact.result()
    overlap = [
        len(set(labels[row][labels[row] >= 0].tolist()) & set(exact_labels[j].tolist()))
        / max(1, exact_labels.shape[1])
        for j, row in enumerate(sample)
    ]
    label = {
        "kind": "approximate",
        "method": kind,
        **info,
        f"recall@{k}_vs_exact": round(float(np.mean(overlap)), 6),
        "recall_sample_queries": int(len(sample)),
        "recall_sample_seed": 0,
    }
    return (scores, labels.astype(np.int64)), label

"""The Ray Data engine: encode the missing shards of a store entry with an actor pool.

One actor per GPU (`compute=ActorPoolStrategy(size=n)`, `num_gpus=1`, an explicit batch size of
one shard per call), each loading the model once. Actors read their shard's documents from the
corpus file themselves (by byte offset, so the data dir must be readable at the same path on
every node, like the weights) and return its vectors; the driver commits each shard into the
store as it arrives, with the same four-step commit as the local engine. Resume therefore
comes from our manifest, not from Ray's (beta) checkpointing, which re-encodes in-memory inputs
(reference notes, section 3b); a driver killed half way loses only the shards in flight.

Identical bytes to the local engine: shards are the same row ranges, each actor runs the same
length-sorted batches, and on CPU every batch runs on one torch thread in both engines
(HFEncoder._embed_batches; BLAS results can depend on the thread count).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Protocol

import numpy as np

from benchmark.datasets.records import Document
from benchmark.datasets.stream import StreamedCorpus, read_documents

if TYPE_CHECKING:
    from benchmark.catalog.registry import DenseConfig
    from benchmark.embeddings.embedding_store import Entry
    from benchmark.embeddings.sources import CorpusSource
    from benchmark.retrievers.options import StoreOptions

log = logging.getLogger(__name__)


class ShardRetriever(Protocol):
    """What the engine needs of the dense retriever that calls it (its class is handed in, so
    this engine sits below benchmark.retrievers.dense instead of importing it back)."""

    config: DenseConfig
    store: StoreOptions

    def search_vectors(self, docs: list[Document]) -> np.ndarray: ...


class ShardEncoder:
    """A Ray Data callable class: loads the passage encoder once, encodes one shard per call."""

    def __init__(
        self, config: dict, device: str, threads: int | None, retriever_class: type[ShardRetriever],
    ) -> None:
        import torch

        from benchmark.catalog.registry import DenseConfig
        from benchmark.retrievers.options import StoreOptions

        if threads and device == "cpu":
            torch.set_num_threads(threads)
        retriever = retriever_class(
            DenseConfig.model_validate(config), device=device,
            store=StoreOptions(use_store=False, backend="torch"), lazy=True,  # as the driver keyed it
        )
        retriever.passage_encoder  # noqa: B018  load the model now, once per actor
        self.retriever = retriever

    def __call__(self, batch: dict) -> dict:
        shards, vectors = [], []
        for i in range(len(batch["shard"])):
            if batch["path"][i]:
                docs = read_documents(
                    _path(batch["path"][i]), int(batch["offset"][i]), int(batch["first_row"][i]),
                    int(batch["n_rows"][i]),
                )
            else:
                docs = [Document(t, x) for t, x in zip(batch["titles"][i], batch["texts"][i],
                                                       strict=True)]
            shards.append(int(batch["shard"][i]))
            vectors.append(self.retriever.search_vectors(docs))
        out = np.empty(len(vectors), dtype=object)
        out[:] = vectors
        return {"shard": np.array(shards, dtype=np.int64), "vectors": out}


def _path(value):
    from pathlib import Path

    return Path(str(value))


def _work_items(corpus: CorpusSource, plan: list[tuple[int, int]], missing: list[int]) -> list[dict]:
    items = []
    for i in missing:
        start, n = plan[i]
        if isinstance(corpus, StreamedCorpus):
            from benchmark.datasets.stream import GRANULE

            items.append({"shard": i, "path": str(corpus.path),
                          "offset": corpus.offsets[start // GRANULE], "first_row": start,
                          "n_rows": n, "titles": [], "texts": []})
        else:  # an in-memory corpus: ship the texts
            docs = corpus.read(start, n)
            items.append({"shard": i, "path": "", "offset": 0, "first_row": start, "n_rows": n,
                          "titles": [d.title for d in docs], "texts": [d.text for d in docs]})
    return items


def encode_with_ray(
    entry: Entry, corpus: CorpusSource, plan: list[tuple[int, int]], missing: list[int],
    retriever: ShardRetriever,
) -> int:
    """Encode `missing` shards on Ray and commit them into `entry`; returns how many."""
    try:
        import ray
        from ray.data import ActorPoolStrategy
    except ImportError as exc:
        from benchmark.core.errors import MaebenchError

        raise MaebenchError(
            '--engine ray needs Ray Data: pip install "maebench[ray]"'
        ) from exc
    import torch

    options = retriever.store
    started = not ray.is_initialized()
    if started:
        ray.init(address=options.ray_address, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)
    try:
        gpus = int(ray.cluster_resources().get("GPU", 0))
        workers = options.ray_workers or (gpus if gpus else 2)
        workers = max(1, min(workers, len(missing)))
        on_gpu = gpus > 0
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        dataset = ray.data.from_items(
            _work_items(corpus, plan, missing), override_num_blocks=len(missing)
        )
        encoded = dataset.map_batches(
            ShardEncoder,
            fn_constructor_kwargs={
                "config": retriever.config.model_dump(mode="json"),
                "device": "cuda" if on_gpu else "cpu",
                "threads": None if on_gpu else torch.get_num_threads(),
                "retriever_class": type(retriever),  # each actor builds the same kind of retriever
            },
            batch_size=1,  # one shard per call: the shard is the unit of commit and resume
            compute=ActorPoolStrategy(size=workers),
            num_gpus=1 if on_gpu else 0,
            # CPU-only: fractional CPUs leave room for Ray's own tasks (a full CPU per actor on
            # a small box hangs the pipeline, reference notes 3b)
            num_cpus=1 if on_gpu else 0.5,
        )
        done = 0
        for batch in encoded.iter_batches(batch_size=1, batch_format="numpy"):
            for shard, vectors in zip(batch["shard"], batch["vectors"], strict=True):
                entry.write(int(shard), np.asarray(vectors, dtype=np.float32))
                done += 1
        return done
    finally:
        if started:
            ray.shutdown()

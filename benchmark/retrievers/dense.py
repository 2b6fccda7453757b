"""Dense bi-encoders on torch + transformers: formatting, batching, pooling, exact search.

The card decides how texts are formatted (prefixes, title mode) and which encoder kind embeds
them (benchmark.retrievers.encoders); this module formats, encodes the corpus shard by shard and
searches exactly, always in fp32.
"""

from __future__ import annotations

import numpy as np

from benchmark.data import Dataset, Document
from benchmark.errors import ModelLoadError
from benchmark.registry import DenseConfig
from benchmark.retrievers.base import Run, document_text
from benchmark.retrievers.encoders import EncoderInput, load_encoder
from benchmark.search import StreamingTopK
from benchmark.timing import PhaseTimer

CORPUS_SHARD = 100_000
SHARD_BYTES = 2 << 30  # bound a corpus shard's fp32 embeddings (DupMAE vectors are |V|+768 wide)


def pick_device(device: str | None) -> str:
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


class DenseRetriever:
    def __init__(self, config: DenseConfig, device: str | None = None, name: str = "") -> None:
        if not config.has_checkpoint:
            raise ModelLoadError(
                f"{name or 'this card'}: its authors never released the checkpoint (card "
                "weights: unreleased); copy the card with `checkpoint:` pointing at your own "
                "weights to run it"
            )
        self.config = config
        self.device = pick_device(device)
        if config.encoder == "separate":
            self.query_encoder = load_encoder(config.query_checkpoint, config, self.device, "query")
            self.passage_encoder = load_encoder(
                config.passage_checkpoint, config, self.device, "passage"
            )
        else:
            self.query_encoder = load_encoder(config.checkpoint, config, self.device, "query")
            self.passage_encoder = self.query_encoder

    def describe(self) -> dict:
        info = {
            "device": self.device,
            "weights_origin": self.query_encoder.origin,
            "model_dtype": self.query_encoder.dtype,
            "model_class": self.query_encoder.model_class.__name__,
        }
        if self.passage_encoder is not self.query_encoder:
            info["passage_weights_origin"] = self.passage_encoder.origin
            info["passage_model_class"] = self.passage_encoder.model_class.__name__
        return info

    def format_queries(self, texts: list[str]) -> list[str]:
        return [self.config.query_prefix + t for t in texts]

    def format_passages(self, docs: list[Document]) -> list[EncoderInput]:
        """The card's title mode and passage prefix applied to corpus documents."""
        cfg = self.config
        if cfg.title == "pair":
            return [(cfg.passage_prefix + d.title, d.text) for d in docs]
        return [cfg.passage_prefix + document_text(d, cfg.title, cfg.title_separator) for d in docs]

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self.query_encoder.encode(
            self.format_queries(texts), self.config.query_max_length, self.config.batch_size,
            "queries",
        )

    def encode_passages(self, texts: list[str] | list[Document]) -> np.ndarray:
        """Documents get the card's title handling; plain strings only the passage prefix."""
        if texts and isinstance(texts[0], Document):
            formatted = self.format_passages(texts)
        else:
            formatted = [self.config.passage_prefix + t for t in texts]
        return self.passage_encoder.encode(
            formatted, self.config.passage_max_length, self.config.batch_size, "corpus"
        )

    def _for_search(self, embeddings: np.ndarray) -> np.ndarray:
        """Cosine without normalized encodings: normalize here, in fp32."""
        embeddings = embeddings.astype(np.float32, copy=False)
        if self.config.similarity == "cosine" and not self.config.normalize:
            norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
            embeddings = embeddings / np.maximum(norms, 1e-12)
        return embeddings

    def retrieve(self, dataset: Dataset, top_k: int, timer: PhaseTimer) -> Run:
        query_ids = list(dataset.queries)
        doc_ids = list(dataset.corpus)
        with timer.phase("encode_queries"):
            queries = self._for_search(self.encode_queries([dataset.queries[q] for q in query_ids]))
        top = StreamingTopK(queries, min(top_k, len(doc_ids)))
        shard_size = max(1000, min(CORPUS_SHARD, SHARD_BYTES // (4 * max(queries.shape[1], 1))))
        for start in range(0, len(doc_ids), shard_size):
            shard_ids = doc_ids[start : start + shard_size]
            with timer.phase("encode_corpus"):
                shard = self._for_search(
                    self.encode_passages([dataset.corpus[d] for d in shard_ids])
                )
            with timer.phase("search"):
                top.add_shard(shard)
        scores, indices = top.result()
        return {
            qid: {doc_ids[int(i)]: float(s) for i, s in zip(indices[row], scores[row], strict=True)}
            for row, qid in enumerate(query_ids)
        }

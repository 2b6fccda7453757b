"""Dense bi-encoders on torch + transformers: formatting, batching, pooling, exact search.

Texts are sorted by length before batching so that each batch pads to similar lengths (the
largest single speed-up on CPU); embeddings are returned in the original order, in fp32,
whatever dtype the encoder ran in.
"""

from __future__ import annotations

import numpy as np

from benchmark.data import Dataset
from benchmark.registry import DenseConfig
from benchmark.retrievers.base import Run, document_text
from benchmark.retrievers.weights import load_failure, resolve_checkpoint
from benchmark.search import StreamingTopK
from benchmark.timing import PhaseTimer

CORPUS_SHARD = 100_000


def _torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def pick_device(device: str | None) -> str:
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


class TextEncoder:
    """One transformer encoder with its tokenizer and pooling (a card may use two of these)."""

    def __init__(self, checkpoint: str, config: DenseConfig, device: str) -> None:
        from transformers import AutoModel, AutoTokenizer, T5EncoderModel

        self.config = config
        self.device = device
        source, self.origin = resolve_checkpoint(checkpoint, config.local_package)
        revision = config.revision if self.origin == "hub" else None
        model_cls = T5EncoderModel if config.encoder == "t5" else AutoModel
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
            self.model = model_cls.from_pretrained(
                source, revision=revision, dtype=_torch_dtype(config.dtype)
            )
        except (OSError, ValueError) as exc:
            raise load_failure(checkpoint, config.revision, exc) from exc
        self.model.eval().to(device)

    def _pool(self, outputs, attention_mask):
        import torch

        if self.config.pooling == "pooler":
            return outputs.pooler_output
        hidden = outputs.last_hidden_state
        if self.config.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / torch.clamp(mask.sum(dim=1), min=1e-9)

    def encode(
        self, texts: list[str], max_length: int, batch_size: int, desc: str = "encode"
    ) -> np.ndarray:
        import torch
        from tqdm.auto import tqdm

        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        chunks: list[np.ndarray] = []
        batches = range(0, len(order), batch_size)
        show = len(order) > 10 * batch_size
        with torch.inference_mode():
            for start in tqdm(batches, desc=desc, disable=not show, leave=False):
                batch = [texts[i] for i in order[start : start + batch_size]]
                inputs = self.tokenizer(
                    batch, padding=True, truncation=True, max_length=max_length,
                    return_tensors="pt",
                ).to(self.device)
                outputs = self.model(**inputs)
                pooled = self._pool(outputs, inputs["attention_mask"]).float()
                if self.config.normalize:
                    pooled = torch.nn.functional.normalize(pooled, p=2, dim=-1)
                chunks.append(pooled.cpu().numpy())
        if not chunks:
            return np.zeros((0, 0), dtype=np.float32)
        sorted_embeddings = np.concatenate(chunks)
        embeddings = np.empty_like(sorted_embeddings)
        embeddings[order] = sorted_embeddings
        return embeddings


class DenseRetriever:
    def __init__(self, config: DenseConfig, device: str | None = None) -> None:
        self.config = config
        self.device = pick_device(device)
        if config.encoder == "separate":
            self.query_encoder = TextEncoder(config.query_checkpoint, config, self.device)
            self.passage_encoder = TextEncoder(config.passage_checkpoint, config, self.device)
        else:
            self.query_encoder = TextEncoder(config.checkpoint, config, self.device)
            self.passage_encoder = self.query_encoder

    def describe(self) -> dict:
        return {"device": self.device, "weights_origin": self.query_encoder.origin}

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        prefixed = [self.config.query_prefix + t for t in texts]
        return self.query_encoder.encode(
            prefixed, self.config.query_max_length, self.config.batch_size, "queries"
        )

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        prefixed = [self.config.passage_prefix + t for t in texts]
        return self.passage_encoder.encode(
            prefixed, self.config.passage_max_length, self.config.batch_size, "corpus"
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
        for start in range(0, len(doc_ids), CORPUS_SHARD):
            shard_ids = doc_ids[start : start + CORPUS_SHARD]
            with timer.phase("encode_corpus"):
                texts = [
                    document_text(dataset.corpus[d], self.config.title, self.config.title_separator)
                    for d in shard_ids
                ]
                shard = self._for_search(self.encode_passages(texts))
            with timer.phase("search"):
                top.add_shard(shard)
        scores, indices = top.result()
        return {
            qid: {doc_ids[int(i)]: float(s) for i, s in zip(indices[row], scores[row], strict=True)}
            for row, qid in enumerate(query_ids)
        }

"""Registry models inside `mteb`'s own evaluation, so anyone can check our numbers against mteb's.

Two adapters, both built from a model card:
- `MaebenchEncoder` implements mteb's EncoderProtocol for dense cards: mteb batches the texts,
  tells us whether they are queries or documents (prompt_type), and we apply the card's prefixes,
  title mode and query/passage encoders; mteb then does its own similarity search and scoring.
- `MaebenchSearch` implements mteb's SearchProtocol for any card (BM25 included): mteb hands over
  the corpus and queries and we return our retriever's top-k.

    import mteb
    from benchmark.retrievers.mteb_adapter import MaebenchEncoder
    mteb.evaluate(MaebenchEncoder("e5-base-v2"), mteb.get_tasks(["SciFact"]))
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmark.catalog.registry import ModelCard, get_card
from benchmark.core.errors import RegistryError
from benchmark.datasets.beir import Dataset
from benchmark.datasets.records import Document


def _card(model: str | ModelCard) -> ModelCard:
    return model if isinstance(model, ModelCard) else get_card(model)


def model_meta(card: ModelCard):
    """mteb ModelMeta for a card: named after its checkpoint so results line up with mteb's."""
    from mteb.models.model_meta import ModelMeta

    cfg = card.retriever
    dense = cfg.kind == "dense"
    checkpoint = (cfg.checkpoint or cfg.query_checkpoint) if dense else None
    return ModelMeta.create_empty(
        overwrites={
            "name": checkpoint or f"maebench/{card.name}",
            "revision": (cfg.revision if dense else None) or "maebench",
            "n_parameters": card.parameters,
            "embed_dim": card.embedding_dim,
            "max_tokens": cfg.passage_max_length if dense else None,
            "similarity_fn_name": ("cosine" if cfg.similarity == "cosine" else "dot")
            if dense else None,
            "use_instructions": bool(dense and (cfg.query_prefix or cfg.passage_prefix)),
            "open_weights": card.weights == "public",
            "framework": ["PyTorch"],
            "languages": ["eng-Latn"],
            "model_type": ["dense"] if dense else ["sparse"],
        }
    )


def _column(batch: dict, key: str, n: int) -> list[str]:
    values = batch.get(key)
    return [v or "" for v in values] if values is not None else [""] * n


class MaebenchEncoder:
    """mteb EncoderProtocol over a dense registry card."""

    def __init__(
        self, model_name: str | ModelCard, revision: str | None = None, *,
        device: str | None = None, **kwargs: Any,
    ) -> None:
        from benchmark.retrievers.dense import DenseRetriever

        self.card = _card(model_name)
        if self.card.retriever.kind != "dense":
            raise RegistryError(f"{self.card.name} is not a dense model; use MaebenchSearch")
        self.retriever = DenseRetriever(self.card.retriever, device=device, name=self.card.name)
        self.mteb_model_meta = model_meta(self.card)

    def encode(self, inputs, *, task_metadata, hf_split: str, hf_subset: str,
               prompt_type=None, **kwargs: Any) -> np.ndarray:
        """Queries get the query prefix and encoder; documents the card's title handling (from
        mteb's separate `title`/`body` columns when present) and the passage encoder."""
        from mteb.types import PromptType

        chunks = []
        for batch in inputs:
            texts = list(batch["text"])
            if prompt_type == PromptType.query:
                chunks.append(self.retriever.encode_queries(texts))
            elif "body" in batch:
                titles = _column(batch, "title", len(texts))
                docs = [Document(title=t, text=b) for t, b in zip(titles, batch["body"], strict=True)]
                chunks.append(self.retriever.encode_passages(docs))
            else:
                chunks.append(self.retriever.encode_passages(texts))
        return np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)

    def similarity(self, embeddings1, embeddings2):
        from mteb.similarity_functions import cos_sim, dot_score

        fn = cos_sim if self.card.retriever.similarity == "cosine" else dot_score
        return fn(embeddings1, embeddings2)

    def similarity_pairwise(self, embeddings1, embeddings2):
        from mteb.similarity_functions import pairwise_cos_sim, pairwise_dot_score

        fn = pairwise_cos_sim if self.card.retriever.similarity == "cosine" else pairwise_dot_score
        return fn(embeddings1, embeddings2)


class MaebenchSearch:
    """mteb SearchProtocol over any registry card: our retriever, mteb's evaluation."""

    def __init__(
        self, model_name: str | ModelCard, revision: str | None = None, *,
        device: str | None = None, **kwargs: Any,
    ) -> None:
        from benchmark.retrievers import build_retriever

        self.card = _card(model_name)
        self.retriever = build_retriever(self.card, device)
        self.mteb_model_meta = model_meta(self.card)
        self._corpus: dict[str, Document] = {}

    def index(self, corpus, *, task_metadata, hf_split: str, hf_subset: str,
              encode_kwargs: dict, num_proc: int | None = None, **kwargs: Any) -> None:
        self._corpus = {
            str(row["id"]): Document(title=row.get("title") or "", text=row.get("text") or "")
            for row in corpus
        }

    def search(self, queries, *, task_metadata, hf_split: str, hf_subset: str, top_k: int,
               encode_kwargs: dict, top_ranked=None, num_proc: int | None = None,
               **kwargs: Any) -> dict[str, dict[str, float]]:
        from benchmark.catalog.tasks import Fingerprints, TaskSpec
        from benchmark.core.timing import PhaseTimer

        dataset = Dataset(
            task=TaskSpec(name="mteb-task", display_name=task_metadata.name, domain="misc"),
            path=Path("."),
            corpus=self._corpus,
            queries={str(row["id"]): row["text"] for row in queries},
            qrels={},
            fingerprints=Fingerprints(corpus="", queries="", qrels=""),
        )
        return self.retriever.retrieve(dataset, top_k, PhaseTimer())

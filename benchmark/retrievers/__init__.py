"""Retrievers: one module per kind. `build_retriever` is the only entry point the runner uses."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from benchmark.catalog.registry import ModelCard
    from benchmark.retrievers.base import Retriever
    from benchmark.retrievers.options import StoreOptions


def build_retriever(
    card: ModelCard, device: str | None = None, store: StoreOptions | None = None
) -> Retriever:
    """Instantiate the retriever a card describes (heavy imports happen only here)."""
    if card.retriever.kind == "bm25":
        from benchmark.retrievers.bm25 import Bm25Retriever

        return Bm25Retriever(card.retriever)
    from benchmark.retrievers.dense import DenseRetriever

    lazy = store is not None and store.use_store  # a warm store run never loads the model
    return DenseRetriever(card.retriever, device=device, name=card.name, store=store, lazy=lazy)

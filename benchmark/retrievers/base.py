"""What every retriever provides: a top-k run for a dataset, and its effective configuration."""

from __future__ import annotations

from typing import Protocol

from benchmark.core.timing import PhaseTimer
from benchmark.datasets.beir import Dataset
from benchmark.datasets.records import Document

# query id -> doc id -> score, top-k per query (ties are broken later, canonically)
Run = dict[str, dict[str, float]]


class Retriever(Protocol):
    def retrieve(self, dataset: Dataset, top_k: int, timer: PhaseTimer) -> Run: ...

    def describe(self) -> dict:
        """Runtime facts beyond the card (device, where the weights came from): provenance."""
        ...


def document_text(doc: Document, title_mode: str, separator: str) -> str:
    """Join title and text as BEIR's and MTEB's encoders do: `(title + sep + text).strip()`."""
    if title_mode == "none" or not doc.title:
        return doc.text.strip()
    return (doc.title + separator + doc.text).strip()

"""The corpus as the encoders see it: ids, a fingerprint and documents read shard by shard,
whether it was streamed from disk (benchmark.datasets.stream) or is an in-memory dict."""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.datasets.records import Document
from benchmark.datasets.stream import GRANULE, StreamedCorpus


@dataclass
class MemoryCorpus:
    """A dict corpus behind the streamed corpus' interface (tests, small in-memory datasets)."""

    docs: dict[str, Document]
    sha256: str

    def __post_init__(self) -> None:
        self.ids = list(self.docs)

    def __len__(self) -> int:
        return len(self.ids)

    def shards(self, shard_rows: int) -> list[tuple[int, int]]:
        n = len(self.ids)
        return [(start, min(shard_rows, n - start)) for start in range(0, n, shard_rows)]

    def read(self, first_row: int, n_rows: int) -> list[Document]:
        return [self.docs[d] for d in self.ids[first_row : first_row + n_rows]]


CorpusSource = StreamedCorpus | MemoryCorpus


def corpus_source(corpus, sha256: str) -> CorpusSource:
    return corpus if isinstance(corpus, StreamedCorpus) else MemoryCorpus(corpus, sha256)


__all__ = ["GRANULE", "CorpusSource", "MemoryCorpus", "corpus_source"]

"""BM25 through bm25s, configured entirely by the card (tokenizer, stemmer, stopwords, k1, b)."""

from __future__ import annotations

import numpy as np

from benchmark.catalog.registry import Bm25Config
from benchmark.core.errors import DataError, RegistryError
from benchmark.core.timing import PhaseTimer
from benchmark.datasets.beir import Dataset
from benchmark.retrievers.base import Run, document_text


class Bm25Retriever:
    def __init__(self, config: Bm25Config) -> None:
        self.config = config
        self._stemmer = None
        if config.stemmer:
            import Stemmer

            try:
                self._stemmer = Stemmer.Stemmer(config.stemmer)
            except KeyError as exc:
                raise RegistryError(f"bm25: unknown stemmer language '{config.stemmer}'") from exc

    def describe(self) -> dict:
        return {"device": "cpu"}

    def _tokenize(self, texts: list[str]):
        import bm25s

        return bm25s.tokenize(
            texts, stopwords=self.config.stopwords, stemmer=self._stemmer, show_progress=False
        )

    def _index(self, texts: list[str]):
        """A bm25s index, or None when the texts hold no indexable term at all (bm25s cannot
        index an empty vocabulary: e.g. the title field of a corpus without titles)."""
        import bm25s

        tokens = self._tokenize(texts)
        if not tokens.vocab:
            return None
        index = bm25s.BM25(method=self.config.method, k1=self.config.k1, b=self.config.b)
        index.index(tokens, show_progress=False)
        return index

    def retrieve(self, dataset: Dataset, top_k: int, timer: PhaseTimer) -> Run:
        doc_ids = list(dataset.corpus)
        query_ids = list(dataset.queries)
        query_texts = [dataset.queries[q] for q in query_ids]
        k = min(top_k, len(doc_ids))
        if self.config.fields == "flat":
            with timer.phase("index"):
                texts = [
                    document_text(dataset.corpus[d], "prepend", self.config.title_separator)
                    for d in doc_ids
                ]
                index = self._index(texts)
            if index is None:
                raise DataError(f"{dataset.task.name}: the corpus holds no indexable term for BM25")
            with timer.phase("search"):
                hits, scores = index.retrieve(
                    self._tokenize(query_texts), k=k, show_progress=False, n_threads=0
                )
        else:
            hits, scores = self._multifield(dataset, doc_ids, query_texts, k, timer)
        # Only documents sharing a term with the query (score > 0), as Lucene: bm25s fills the
        # top k with arbitrary zero-score documents when fewer match, and those fillers changed
        # NFCorpus R@1000 from Pyserini's 0.3704 to 0.4908. A query may get fewer than k.
        return {
            qid: {
                doc_ids[int(i)]: float(s)
                for i, s in zip(hits[row], scores[row], strict=True)
                if s > 0
            }
            for row, qid in enumerate(query_ids)
        }

    def _multifield(
        self, dataset: Dataset, doc_ids: list[str], query_texts: list[str], k: int, timer: PhaseTimer
    ) -> tuple[np.ndarray, np.ndarray]:
        """Title and text indexed separately, scores summed with weight 1.0 each (as Pyserini's
        `--fields contents=1.0 title=1.0`). bm25s has no multi-field mode, so per-query score
        vectors over the whole corpus are added here: O(queries x docs), fine up to ~1M docs."""
        with timer.phase("index"):
            indexes = [
                index
                for index in (
                    self._index([dataset.corpus[d].title for d in doc_ids]),
                    self._index([dataset.corpus[d].text for d in doc_ids]),
                )
                if index is not None
            ]
        hits = np.empty((len(query_texts), k), dtype=np.int64)
        scores = np.empty((len(query_texts), k), dtype=np.float32)
        with timer.phase("search"):
            for row, text in enumerate(query_texts):
                tokens = self._query_terms(text)
                total = np.zeros(len(doc_ids), dtype=np.float32)
                if tokens:  # a query of stopwords only scores 0 everywhere
                    for index in indexes:
                        total += index.get_scores(tokens)
                top = np.argpartition(-total, k - 1)[:k]
                top = top[np.argsort(-total[top], kind="stable")]
                hits[row], scores[row] = top, total[top]
        return hits, scores

    def _query_terms(self, text: str) -> list[str]:
        import bm25s

        tokenized = bm25s.tokenize(
            [text], stopwords=self.config.stopwords, stemmer=self._stemmer, show_progress=False,
            return_ids=False,
        )
        return tokenized[0] if tokenized else []

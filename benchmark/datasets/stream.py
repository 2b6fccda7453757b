"""Streaming a BEIR corpus.jsonl: one validating pass, then shard-by-shard reads by byte offset.

The corpus never lives in memory as Python objects. One scan checks every line exactly as
`benchmark.datasets.beir.load_corpus` does (same one-line errors), hashes the raw bytes (the corpus
fingerprint), keeps the ids compactly (one bytes buffer + offsets, ~15 bytes an id instead of
~80 for a Python str in a dict) and records the byte offset of every `GRANULE`-th row, so any
shard whose size is a multiple of GRANULE can later be read with one seek.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmark.core.errors import DataError
from benchmark.datasets.records import Document, corpus_document, json_row

GRANULE = 1000  # rows between recorded byte offsets; shard sizes are multiples of it


class IdTable:
    """Document ids as one UTF-8 buffer plus int64 end offsets (compact, index -> str)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._ends = array("q")

    def append(self, doc_id: str) -> None:
        self._buffer += doc_id.encode("utf-8")
        self._ends.append(len(self._buffer))

    def __len__(self) -> int:
        return len(self._ends)

    def __getitem__(self, index: int) -> str:
        start = self._ends[index - 1] if index > 0 else 0
        return self._buffer[start : self._ends[index]].decode("utf-8")

    def __iter__(self):
        start = 0
        for end in self._ends:
            yield self._buffer[start:end].decode("utf-8")
            start = end

    def nbytes(self) -> int:
        return len(self._buffer) + self._ends.itemsize * len(self._ends)


@dataclass
class StreamedCorpus:
    """What one scan of corpus.jsonl learned; the documents themselves stay on disk."""

    path: Path
    sha256: str
    ids: IdTable
    offsets: list[int]  # byte offset of row 0, GRANULE, 2*GRANULE, ...
    judged_present: set[str] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.ids)

    def shards(self, shard_rows: int) -> list[tuple[int, int]]:
        """(first row, number of rows) of each shard of `shard_rows` rows."""
        if shard_rows % GRANULE:
            raise ValueError(f"shard size must be a multiple of {GRANULE}")
        n = len(self)
        return [(start, min(shard_rows, n - start)) for start in range(0, n, shard_rows)]

    def read(self, first_row: int, n_rows: int) -> list[Document]:
        """The documents of rows [first_row, first_row + n_rows), parsed from one seek."""
        if first_row % GRANULE:
            raise ValueError(f"a shard starts at a multiple of {GRANULE}")
        return read_documents(self.path, self.offsets[first_row // GRANULE], first_row, n_rows)


def read_documents(path: Path, offset: int, first_row: int, n_rows: int) -> list[Document]:
    """`n_rows` documents starting at byte `offset` (a plain function so Ray workers can call it
    with picklable arguments only). Line numbers in errors are not known here, so a row is named
    by its index; the scan has already validated every line."""
    docs: list[Document] = []
    with path.open("rb") as handle:
        handle.seek(offset)
        row = first_row
        while len(docs) < n_rows:
            raw = handle.readline()
            if not raw:
                raise DataError(f"{path}: ended at row {row}, expected {first_row + n_rows} rows; "
                                "the file changed since it was scanned")
            line = raw.decode("utf-8")
            if not line.strip():
                continue
            _, doc = corpus_document(path, row, json_row(path, row, line, ("_id", "text")))
            docs.append(doc)
            row += 1
    return docs


def scan_corpus(path: Path, judged: Iterable[str] = ()) -> StreamedCorpus:
    """Validate every line, fingerprint the bytes, keep ids compactly and note which of the
    `judged` ids occur. Duplicate ids are found from 64-bit hashes (confirmed on the strings),
    so no set of all ids is ever built."""
    if not path.is_file():
        raise DataError(f"missing file {path}")
    judged = set(judged)
    digest = hashlib.sha256()
    ids = IdTable()
    hashes = array("q")
    lines = array("q")
    offsets: list[int] = []
    present: set[str] = set()
    position = 0
    with path.open("rb") as handle:
        for lineno, raw in enumerate(handle, start=1):
            digest.update(raw)
            start, position = position, position + len(raw)
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not valid UTF-8 ({exc.reason})") from exc
            if not line.strip():
                continue
            doc_id, _ = corpus_document(path, lineno, json_row(path, lineno, line, ("_id", "text")))
            if len(ids) % GRANULE == 0:
                offsets.append(start)
            ids.append(doc_id)
            hashes.append(hash(doc_id))
            lines.append(lineno)
            if doc_id in judged:
                present.add(doc_id)
    if not len(ids):
        raise DataError(f"{path}: the corpus is empty")
    _refuse_duplicates(path, ids, np.frombuffer(hashes, dtype=np.int64), lines)
    return StreamedCorpus(path, digest.hexdigest(), ids, offsets, present)


def _refuse_duplicates(path: Path, ids: IdTable, hashes: np.ndarray, lines: array) -> None:
    order = np.argsort(hashes, kind="stable")
    ordered = hashes[order]
    same = np.flatnonzero(ordered[1:] == ordered[:-1])
    for position in same:  # hash equal: compare the strings (a true collision is ~never)
        first, second = sorted((int(order[position]), int(order[position + 1])))
        if ids[first] == ids[second]:
            raise DataError(f"{path}:{lines[second]}: duplicate document id '{ids[second]}'")

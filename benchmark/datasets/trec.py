"""TREC-format queries and qrels (MS MARCO passage / TREC DL), beside a BEIR corpus.

Topics are `qid<TAB>text` lines (TREC DL 2020's file has CRLF endings); qrels are
`qid Q0 docid grade` lines separated by spaces or tabs, as trec_eval reads them. Every malformed
line is a DataError naming file and line, as for the BEIR files.
"""

from __future__ import annotations

from pathlib import Path

from benchmark.core.errors import DataError
from benchmark.datasets.records import add_judgement, unique_rows


def locate(folder: Path, relative: str) -> Path:
    """`relative` below the data dir (the corpus folder's parent) or below its parent."""
    data_dir = folder.parent
    for base in (data_dir, data_dir.parent):
        candidate = base / relative
        if candidate.is_file():
            return candidate
    raise DataError(f"missing file {relative} (looked in {data_dir} and {data_dir.parent})")


def _lines(path: Path):
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from exc
    for lineno, line in enumerate(raw.split(b"\n"), start=1):
        try:
            text = line.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError as exc:
            raise DataError(f"{path}:{lineno}: not valid UTF-8 ({exc.reason})") from exc
        if text.strip():
            yield lineno, text


def load_topics(path: Path) -> dict[str, str]:
    def rows():
        for lineno, line in _lines(path):
            qid, sep, text = line.partition("\t")
            if not sep or not qid.strip():
                raise DataError(f"{path}:{lineno}: expected 'qid<TAB>query'")
            yield lineno, qid, text

    return unique_rows(path, rows(), "query", empty="no queries")


def load_trec_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    for lineno, line in _lines(path):
        cols = line.split()
        if len(cols) != 4:
            raise DataError(f"{path}:{lineno}: expected 'qid Q0 docid grade', got {len(cols)} columns")
        qid, _, doc_id, raw = cols
        try:
            grade = int(raw)
        except ValueError as exc:
            raise DataError(f"{path}:{lineno}: relevance '{raw}' is not an integer") from exc
        add_judgement(qrels, f"{path}:{lineno}", qid, doc_id, grade)
    if not qrels:
        raise DataError(f"{path}: no relevance judgements")
    return qrels

"""One checked row of a BEIR file: a document, a JSON-lines row, an id that can be stored.

Shared by the in-memory loader (benchmark.datasets.beir) and the streaming reader
(benchmark.datasets.stream), so both refuse exactly the same lines with the same one-line
errors; neither needs the other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from benchmark.core.errors import DataError


@dataclass(frozen=True)
class Document:
    title: str
    text: str


def json_row(path: Path, lineno: int, line: str, required: tuple[str, ...]) -> dict:
    """One JSON-lines row, checked: an object with the required fields and a usable `_id`."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{lineno}: bad JSON line ({exc.msg})") from exc
    if not isinstance(obj, dict):
        raise DataError(f"{path}:{lineno}: expected a JSON object")
    for key in required:
        if key not in obj:
            raise DataError(f"{path}:{lineno}: missing field '{key}'")
    if not isinstance(obj["_id"], (str, int)) or isinstance(obj["_id"], bool):
        raise DataError(f"{path}:{lineno}: field '_id' must be a string")
    problem = id_problem(str(obj["_id"]))
    if problem:
        raise DataError(f"{path}:{lineno}: field '_id' {problem}")
    return obj


def id_problem(value: str) -> str | None:
    """Why `value` cannot be a query or document id (None when it can): run files are
    whitespace-separated TREC lines and must be UTF-8, so an id with whitespace, a control
    character or a lone surrogate would be stored and then be unreadable (issue 11, class 9)."""
    if not value:
        return "is empty"
    if len(value) > 512:
        return "is longer than 512 characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"{value[:40]!r} is not valid Unicode (a lone surrogate)"
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        return f"{value[:40]!r} contains whitespace or a control character"
    return None


def text_field(path: Path, lineno: int, obj: dict, key: str) -> str:
    value = obj.get(key) or ""
    if not isinstance(value, str):
        raise DataError(f"{path}:{lineno}: field '{key}' must be a string")
    return value


def corpus_document(path: Path, lineno: int, obj: dict) -> tuple[str, Document]:
    """A checked corpus row as (id, Document); shared with the streaming reader."""
    doc = Document(
        title=text_field(path, lineno, obj, "title"), text=text_field(path, lineno, obj, "text")
    )
    return str(obj["_id"]), doc


def unique_rows(path: Path, rows, kind: str, empty: str | None = None) -> dict:
    """`rows` of (line number, id, value) as a dict; an id seen twice is a DataError naming its
    line (`kind`: "document", "query"), and with `empty` so is a file without rows. The BEIR
    corpus and queries and the TREC topics share this rule."""
    found: dict = {}
    for lineno, key, value in rows:
        if key in found:
            raise DataError(f"{path}:{lineno}: duplicate {kind} id '{key}'")
        found[key] = value
    if empty is not None and not found:
        raise DataError(f"{path}: {empty}")
    return found


def add_judgement(qrels: dict[str, dict[str, int]], where: str, query_id: str, doc_id: str,
                  grade: int) -> None:
    """Record one relevance grade; the same (query, document) judged twice with different grades
    is a DataError at `where` (file:line): BEIR qrels and TREC qrels files share this rule."""
    docs = qrels.setdefault(query_id, {})
    if doc_id in docs and docs[doc_id] != grade:
        raise DataError(f"{where}: conflicting grades for ({query_id}, {doc_id})")
    docs[doc_id] = grade

"""Run files: the TREC run stored beside every result, as bytes on disk.

`results/<model>/<task>.run.gz` holds the top `run.depth` documents per query as TREC lines,
gzip with mtime 0, so identical runs give identical bytes and the result JSON can name the
file's sha256. The results store (benchmark.results.result_store) writes and reads these files; this
module is their format, and the limits a run file from outside (a submission) is read under.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import zlib

from benchmark.core.errors import ResultError
from benchmark.evaluation.metrics import RankedList

RUN_TAG = "maebench"


def encode_run(run: dict[str, RankedList], depth: int) -> bytes:
    """TREC run lines, canonical order, gzip with a fixed header (deterministic bytes).

    Scores are written exactly: repr of the float64, the shortest text that parses back to the
    same number. trec_eval ignores our rank column and re-sorts by score (ties by doc id), so a
    rounded score could merge two different scores into a tie and change the metrics anyone
    recomputes from the file (bm25/scifact query 873 did: nDCG@10 0.685973 instead of 0.686300)."""
    lines = io.StringIO()
    for qid in sorted(run):
        for rank, (doc_id, score) in enumerate(run[qid][:depth], start=1):
            lines.write(f"{qid} Q0 {doc_id} {rank} {float(score)!r} {RUN_TAG}\n")
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, filename="") as gz:
        gz.write(lines.getvalue().encode("utf-8"))
    return buffer.getvalue()


MAX_RUN_LINE = 4096  # bytes in one TREC line: two ids, a rank, a score, a tag


MAX_RUN_LINES = 20_000_000  # MS MARCO dev at depth 1000 is 7M lines


def decode_run(
    data: bytes, origin: str, max_bytes: int = 1 << 30, max_lines: int = MAX_RUN_LINES
) -> dict[str, RankedList]:
    """Parse a gzip TREC run; ranks must be 1..n in order so the stored order is the ranking.

    Streamed line by line with hard limits on uncompressed bytes, lines and line length, so a
    small gzip bomb (1 MB -> GBs of one line or of newlines) is refused at its first bad line
    instead of being decompressed into memory (it used to take 3.6 GB)."""
    run: dict[str, RankedList] = {}
    total = 0
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
            for lineno, raw in enumerate(iter(lambda: gz.readline(MAX_RUN_LINE + 1), b""), start=1):
                total += len(raw)
                if total > max_bytes:
                    raise ResultError(f"{origin}: run file larger than {max_bytes} bytes uncompressed")
                if lineno > max_lines:
                    raise ResultError(f"{origin}: run file has more than {max_lines} lines")
                if len(raw) > MAX_RUN_LINE:
                    raise ResultError(f"{origin}:{lineno}: line longer than {MAX_RUN_LINE} bytes")
                _parse_run_line(raw, lineno, origin, run)
    except (OSError, EOFError, zlib.error) as exc:
        raise ResultError(f"{origin}: not a valid gzip file") from exc
    return run


def _parse_run_line(raw: bytes, lineno: int, origin: str, run: dict[str, RankedList]) -> None:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ResultError(f"{origin}:{lineno}: not valid UTF-8") from exc
    parts = line.split()
    if len(parts) != 6:
        raise ResultError(f"{origin}:{lineno}: expected 6 columns 'qid Q0 doc rank score tag'")
    qid, _, doc_id, rank, score, _ = parts
    ranked = run.setdefault(qid, [])
    try:
        rank_value, score_value = int(rank), float(score)
    except ValueError as exc:
        raise ResultError(f"{origin}:{lineno}: rank or score is not a number") from exc
    if rank_value != len(ranked) + 1:
        raise ResultError(f"{origin}:{lineno}: rank {rank} out of order for query {qid}")
    ranked.append((doc_id, score_value))


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

"""The result schema (versioned), run-file encoding, and verified reading of the results/ tree.

Layout: results/<model>/<task>.json beside results/<model>/<task>.run.gz (TREC run, top
`run.depth` per query, gzip with mtime 0 so identical runs give identical bytes). Every write
goes through benchmark.store.ResultStore (journaled, locked); reading checks the run file's
sha256 and the stored EvalKey against the result's own fields.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import json
import os
import re
import tempfile
import zlib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from benchmark.errors import ResultError
from benchmark.evalkey import EvalKey
from benchmark.evaluate import RankedList
from benchmark.paths import check_name
from benchmark.tasks import Fingerprints
from benchmark.validation import validate

SCHEMA_VERSION = 1
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._\-]{0,79}$")
RUN_TAG = "maebench"
# results/ sub-folders that hold other data, never a model's results
RESERVED_DIRS = frozenset({"reported", "reproductions", "studies"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelInfo(_Strict):
    name: str = Field(pattern=NAME_RE.pattern)
    display_name: str
    family: str
    kind: Literal["bm25", "dense"]
    checkpoint: str | None = None
    revision: str | None = None
    config: dict[str, Any]


class TaskInfo(_Strict):
    name: str = Field(pattern=NAME_RE.pattern)
    split: str
    quirks: list[str]
    relevance_threshold: int
    fingerprints: Fingerprints | None
    n_docs: int | None
    n_queries: int
    subtasks: list[str] = []
    warnings: list[str] = []


class RunInfo(_Strict):
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    depth: int = Field(gt=0)
    format: Literal["trec.gz"] = "trec.gz"


class Provenance(_Strict):
    maebench: str
    maebench_commit: str | None = None  # git commit of the checkout ("+dirty"), None from a wheel
    versions: dict[str, str | None]
    python: str
    platform: str
    hardware: dict[str, Any]
    seed: int
    runtime: dict[str, Any] = {}
    timings: dict[str, float]
    created_at: str
    command: str | None = None


class Result(_Strict):
    schema_version: Literal[1] = SCHEMA_VERSION
    model: ModelInfo
    task: TaskInfo
    metrics: dict[str, float]
    per_query: dict[str, dict[str, float]]
    run: RunInfo | None
    provenance: Provenance
    # the evaluation's identity when it was stored (benchmark.evalkey); decisions always use
    # EvalKey.of(result), recomputed from the fields above
    eval_key: EvalKey | None = None

    @model_validator(mode="after")
    def _ranges(self) -> Result:
        """Scores are in [0, 1] and timings are seconds in [0, 1e7]: what pages format."""
        for name, value in self.metrics.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"metrics.{name}: {value!r} is not in [0, 1]")
        for name, scores in self.per_query.items():
            if any(not 0.0 <= v <= 1.0 for v in scores.values()):
                raise ValueError(f"per_query.{name}: scores must be in [0, 1]")
        for name, value in self.provenance.timings.items():
            if not 0.0 <= value <= 1e7:
                raise ValueError(f"provenance.timings.{name}: {value!r} is not in [0, 1e7] seconds")
        return self

    def main_score(self, metric: str = "nDCG@10") -> float:
        return self.metrics[metric]


def result_path(results_dir: Path, model: str, task: str) -> Path:
    for name in (model, task):
        check_name(name, "name", ResultError)
    if model in RESERVED_DIRS:
        raise ResultError(f"'{model}' is reserved in results/ and cannot name a model")
    return results_dir / model / f"{task}.json"


def run_path(json_path: Path) -> Path:
    return json_path.with_name(json_path.name.removesuffix(".json") + ".run.gz")


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


def _atomic_write_all(files: list[tuple[Path, bytes]]) -> None:
    """Write every file to a temporary sibling first (fsynced), then rename them into place in
    order: a crash before the renames changes nothing; the renames themselves take microseconds."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, data in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            staged.append((tmp, path))
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        for tmp, path in staged:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write(path: Path, data: bytes) -> None:
    _atomic_write_all([(path, data)])


def dump_result(result: Result) -> bytes:
    return (json.dumps(result.model_dump(mode="json"), indent=1, sort_keys=True) + "\n").encode()


def with_eval_key(result: Result) -> Result:
    """The result with its EvalKey (recomputed from its fields) recorded."""
    return result.model_copy(update={"eval_key": EvalKey.of(result)})


def write_result(
    results_dir: Path,
    result: Result,
    run_bytes: bytes | None,
    overwrite: bool = False,
) -> Path:
    """Store a result and its run file through the ResultStore (one transaction)."""
    from benchmark.store import ResultStore

    return ResultStore(results_dir).write(result, run_bytes, overwrite=overwrite)


MAX_RESULT_BYTES = 256 << 20
MAX_RUN_FILE_BYTES = 2 << 30  # gzip of MS MARCO dev at depth 1000 is ~100 MB


def read_result(path: Path, verify_run: bool = True) -> Result:
    """Read and validate a stored result; with `verify_run`, its run file must exist and have
    the sha256 the JSON names (a JSON next to another run's file is an error, never used)."""
    from benchmark.paths import read_bounded

    data = read_bounded(path, MAX_RESULT_BYTES, "result JSON", error=ResultError)  # no FIFO hang
    try:
        raw = json.loads(data.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ResultError(f"{path}: cannot read result JSON ({type(exc).__name__})") from exc
    result = parse_result(raw, str(path))
    if result.eval_key is not None:
        recomputed = EvalKey.of(result)
        differs = result.eval_key.differences(recomputed, with_config=False)
        if differs:
            raise ResultError(f"{path}: field eval_key: its {differs[0]} differ from the result's own")
    if verify_run and result.run is not None:
        file = path.parent / result.run.file
        if file.name != run_path(path).name:
            raise ResultError(f"{path}: field run.file: must be '{run_path(path).name}'")
        try:
            digest = _sha256_file(file)
        except OSError as exc:
            raise ResultError(f"{file}: cannot read run file ({exc.strerror})") from exc
        if digest != result.run.sha256:
            raise ResultError(
                f"{file}: sha256 does not match {path.name}'s run.sha256 (an interrupted write? "
                "run any maebench command to let the store recover, else re-run the result)"
            )
    return result


def _no_constant(name: str) -> float:
    raise ValueError(f"non-finite number {name}")


def _sha256_file(path: Path) -> str:
    """The sha256 of a regular file (a FIFO or a device raises OSError instead of blocking or
    never ending)."""
    import stat

    digest = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# Bounds on what an untrusted result may hold, checked before the schema: nesting (pydantic and
# json.dumps recurse: a 300-level provenance field passed `submit --check`, then crashed the
# commit's serialisation) and the range of every number a page formats (3.5e-305 or 1e300 in a
# timing broke the site's formatting for everyone).
MAX_RESULT_NESTING = 24
MAX_ABS_NUMBER = 1e15
MIN_ABS_NONZERO = 1e-30


def check_plain_data(raw: Any, origin: str, error: type[Exception] = ResultError) -> None:
    """Iteratively refuse structures nested deeper than MAX_RESULT_NESTING and numbers that are
    not finite or lie outside [MIN_ABS_NONZERO, MAX_ABS_NUMBER] in absolute value (0 is fine)."""
    stack: list[tuple[Any, int, str]] = [(raw, 0, "")]
    while stack:
        value, depth, where = stack.pop()
        if depth > MAX_RESULT_NESTING:
            raise error(f"{origin}: field {where.lstrip('.') or '(top level)'}: nested deeper than "
                        f"{MAX_RESULT_NESTING} levels")
        if isinstance(value, dict):
            stack.extend((v, depth + 1, f"{where}.{k}") for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((v, depth + 1, f"{where}.{i}") for i, v in enumerate(value))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            magnitude = abs(value)
            if magnitude != magnitude or magnitude > MAX_ABS_NUMBER or 0 < magnitude < MIN_ABS_NONZERO:
                raise error(f"{origin}: field {where.lstrip('.')}: number {value!r} out of range "
                            f"(finite, 0 or {MIN_ABS_NONZERO:g} to {MAX_ABS_NUMBER:g} in size)")


def parse_result(raw: Any, origin: str) -> Result:
    check_plain_data(raw, origin)
    return validate(raw, Result, origin, ResultError)


def read_run(path: Path, result: Result) -> dict[str, RankedList]:
    """Load a result's run file, checking it is the one the result was computed from."""
    if result.run is None:
        raise ResultError(f"{path}: this result has no run file")
    file = path.parent / result.run.file
    from benchmark.paths import read_bounded

    data = read_bounded(file, MAX_RUN_FILE_BYTES, "run file", error=ResultError)
    if sha256_bytes(data) != result.run.sha256:
        raise ResultError(f"{file}: sha256 does not match the result's run.sha256")
    return decode_run(data, str(file))


def iter_results(results_dir: Path) -> list[tuple[Path, Result]]:
    """Every stored result (results/reported/ and results/reproductions/ are skipped)."""
    found = []
    if not results_dir.is_dir():
        return found
    from benchmark.store import ResultStore

    ResultStore(results_dir)  # finishes or undoes an interrupted write first
    for path in sorted(results_dir.glob("*/*.json")):
        folder = path.parent.name
        if folder in RESERVED_DIRS or folder.startswith(".") or path.name.startswith("."):
            continue  # papers' numbers, reproduction reports, a submission being staged
        found.append((path, read_result(path)))
    return found

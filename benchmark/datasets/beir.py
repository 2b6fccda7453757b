"""Loading BEIR-format datasets, from a local folder or the official download, with fingerprints.

A BEIR folder holds corpus.jsonl, queries.jsonl and qrels/<split>.tsv. Every malformed line is
reported with its file and line number; fingerprints are sha256 of the raw file bytes so that
two results computed on different copies of a dataset can never be compared by accident.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.catalog.tasks import Fingerprints, TaskSpec, load_catalog
from benchmark.core.errors import DataError
from benchmark.core.files import sha256_file
from benchmark.core.paths import cache_dir, data_dir_from_env
from benchmark.datasets.records import (
    Document,
    add_judgement,
    corpus_document,
    json_row,
    text_field,
    unique_rows,
)

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 30


@dataclass
class Dataset:
    """One task's evaluation data: the whole corpus, the split's queries and their qrels."""

    task: TaskSpec
    path: Path
    corpus: dict[str, Document]  # or a StreamedCorpus (load_beir_folder(stream=True))
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    fingerprints: Fingerprints
    warnings: list[str] = field(default_factory=list)


@contextmanager
def _utf8_lines(path: Path) -> Iterator[Iterator[tuple[int, str]]]:
    """Numbered lines of a UTF-8 file (line endings kept); a bad byte is a DataError naming file
    and line. Decoded line by line because a text-mode reader decodes whole blocks ahead."""

    def numbered(handle) -> Iterator[tuple[int, str]]:
        for lineno, raw in enumerate(handle, start=1):
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not valid UTF-8 ({exc.reason})") from exc

    with path.open("rb") as handle:
        yield numbered(handle)


def _json_lines(path: Path, required: tuple[str, ...]) -> list[tuple[int, dict]]:
    if not path.is_file():
        raise DataError(f"missing file {path}")
    rows: list[tuple[int, dict]] = []
    with _utf8_lines(path) as lines:
        for lineno, line in lines:
            if not line.strip():
                continue
            rows.append((lineno, json_row(path, lineno, line, required)))
    return rows


def load_corpus(path: Path) -> dict[str, Document]:
    rows = ((lineno, *corpus_document(path, lineno, obj))
            for lineno, obj in _json_lines(path, ("_id", "text")))
    return unique_rows(path, rows, "document", empty="the corpus is empty")


def load_queries(path: Path) -> dict[str, str]:
    rows = ((lineno, str(obj["_id"]), text_field(path, lineno, obj, "text"))
            for lineno, obj in _json_lines(path, ("_id", "text")))
    return unique_rows(path, rows, "query")


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    """Read `query-id<TAB>corpus-id<TAB>score` rows; a non-numeric first row is the header."""
    if not path.is_file():
        raise DataError(f"missing file {path}")
    qrels: dict[str, dict[str, int]] = {}
    with _utf8_lines(path) as lines:
        for lineno, line in lines:
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            cols = line.split("\t")
            if len(cols) != 3:
                raise DataError(f"{path}:{lineno}: expected 3 tab-separated columns, got {len(cols)}")
            query_id, doc_id, raw_score = cols
            try:
                score = int(raw_score)
            except ValueError as exc:
                if lineno == 1:
                    continue  # header row
                raise DataError(f"{path}:{lineno}: relevance '{raw_score}' is not an integer") from exc
            add_judgement(qrels, f"{path}:{lineno}", query_id, doc_id, score)
    if not qrels:
        raise DataError(f"{path}: no relevance judgements")
    return qrels


def load_beir_folder(task: TaskSpec, folder: Path, stream: bool = False) -> Dataset:
    """Load and cross-check one BEIR folder; every inconsistency is a DataError naming its file.

    With `stream`, the corpus is scanned (validated, fingerprinted, ids kept compactly) but not
    held: `Dataset.corpus` is then a benchmark.datasets.stream.StreamedCorpus read shard by shard."""
    if not folder.is_dir():
        raise DataError(f"no dataset folder for task '{task.name}' at {folder}")
    files = {
        "corpus": folder / "corpus.jsonl",
        "queries": folder / "queries.jsonl",
        "qrels": folder / "qrels" / f"{task.split}.tsv",
    }
    if task.trec_files is not None:  # TREC DL: TREC-format topics and qrels, BEIR corpus
        from benchmark.datasets.trec import load_topics, load_trec_qrels, locate

        files["queries"] = locate(folder, task.trec_files.queries)
        files["qrels"] = locate(folder, task.trec_files.qrels)
        read_queries, read_qrels = load_topics, load_trec_qrels
    else:
        read_queries, read_qrels = load_queries, load_qrels
    corpus = present = None if stream else load_corpus(files["corpus"])
    all_queries = read_queries(files["queries"])
    qrels = read_qrels(files["qrels"])
    if stream:  # the scan notes which judged ids occur, so the judged ids come first
        from benchmark.datasets.stream import scan_corpus

        corpus = scan_corpus(files["corpus"], (d for docs in qrels.values() for d in docs))
        present = corpus.judged_present

    for query_id in qrels:
        if query_id not in all_queries:
            raise DataError(f"{files['qrels']}: query-id '{query_id}' is not in {files['queries'].name}")
    unknown = _unknown_judged_docs(qrels, present, files)
    queries = {qid: all_queries[qid] for qid in qrels}

    fingerprints = Fingerprints(**{
        name: corpus.sha256 if stream and name == "corpus" else sha256_file(p)
        for name, p in files.items()
    })
    warnings = _sanity_warnings(task, corpus, queries, fingerprints)
    if unknown:
        warnings.append(
            f"{task.name}: {len(unknown)} judged document(s) not in the corpus (e.g. '{unknown[0]}'); "
            "kept, as BEIR, MTEB and trec_eval do: they count as relevant but unretrievable"
        )
    for message in warnings:
        log.warning(message)
    return Dataset(task, folder, corpus, queries, qrels, fingerprints, warnings)


MAX_UNKNOWN_JUDGED_FRACTION = 0.01


def _unknown_judged_docs(qrels: dict, corpus, files: dict[str, Path]) -> list[str]:
    """Judged doc ids missing from the corpus. Official BEIR files have a few (ArguAna: 1 in
    1,406 test judgements), which every peer keeps; more than 1% means the qrels and the corpus
    do not belong together, and that is an error."""
    judged = [(q, d) for q, docs in qrels.items() for d in docs]
    unknown = sorted({d for _, d in judged if d not in corpus})
    if len(unknown) > MAX_UNKNOWN_JUDGED_FRACTION * len(judged):
        raise DataError(
            f"{files['qrels']}: corpus-id '{unknown[0]}' is not in {files['corpus'].name} "
            f"({len(unknown)} of {len(judged)} judged documents missing)"
        )
    return unknown


def _sanity_warnings(
    task: TaskSpec, corpus: dict, queries: dict, fingerprints: Fingerprints
) -> list[str]:
    warnings = []
    if task.fingerprints and task.fingerprints != fingerprints:
        differing = [
            name
            for name in ("corpus", "queries", "qrels")
            if getattr(task.fingerprints, name) != getattr(fingerprints, name)
        ]
        warnings.append(f"{task.name}: {', '.join(differing)} differ from the official release")
    if task.beir_stats and (len(corpus), len(queries)) != (
        task.beir_stats.n_docs,
        task.beir_stats.n_queries,
    ):
        warnings.append(
            f"{task.name}: {len(corpus)} docs / {len(queries)} queries, BEIR lists "
            f"{task.beir_stats.n_docs} / {task.beir_stats.n_queries}"
        )
    return warnings


def resolve_folder(task: TaskSpec, data_dir: Path | None = None, download: bool = True) -> Path:
    """Find a task's folder: embedded, --data-dir / MAEBENCH_DATA_DIR, cache, else download."""
    if task.embedded_path is not None:
        return task.embedded_path
    data_dir = data_dir or data_dir_from_env()
    if data_dir is not None:
        folder = Path(data_dir) / task.relative_path
        if not folder.is_dir():
            raise DataError(f"task '{task.name}': no folder {folder} (looked in --data-dir {data_dir})")
        return folder
    cached = cache_dir() / "beir" / task.relative_path
    if cached.is_dir():
        return cached
    if (cache_dir() / "mteb" / task.name).is_dir():
        return cache_dir() / "mteb" / task.name
    if not download:
        raise DataError(f"task '{task.name}' is not in the cache {cache_dir()}; pass --data-dir")
    try:
        download_beir(task)
    except DataError as beir_error:
        if task.mteb is None:
            raise
        from benchmark.datasets.mteb_hub import fetch_from_mteb_hub

        # said once: as part of the error when the Hub copy fails too, else as a warning
        log.info("%s; trying the MTEB dataset on the Hugging Face Hub", beir_error)
        try:
            fetch_from_mteb_hub(task, cache_dir() / "mteb" / task.name)
        except DataError as hub_error:
            raise DataError(f"{beir_error}; the Hub copy failed too: {hub_error}") from hub_error
        log.warning("%s; using the MTEB dataset from the Hugging Face Hub instead", beir_error)
        return cache_dir() / "mteb" / task.name
    return cached


def download_beir(task: TaskSpec) -> Path:
    """Fetch the official BEIR zip into the cache, unpack atomically, then check fingerprints."""
    if "not_redistributable" in task.quirks:
        raise DataError(
            f"task '{task.name}' is not on the BEIR server; build it locally and pass --data-dir"
        )
    archive_name = task.relative_path.split("/")[0]
    url = load_catalog().beir_url.format(name=archive_name)
    target = cache_dir() / "beir"
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as tmp:
        zip_path = Path(tmp) / f"{archive_name}.zip"
        try:
            with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response, zip_path.open(
                "wb"
            ) as out:
                shutil.copyfileobj(response, out)
        except (urllib.error.URLError, OSError) as exc:
            raise DataError(
                f"cannot download {url} ({exc}); pass --data-dir pointing at a BEIR folder"
            ) from exc
        try:
            with zipfile.ZipFile(zip_path) as archive:
                _check_members(archive, archive_name)
                archive.extractall(tmp)
        except zipfile.BadZipFile as exc:
            raise DataError(f"{url} is not a valid zip archive") from exc
        final = target / archive_name
        if not final.exists():
            (Path(tmp) / archive_name).rename(final)
    folder = cache_dir() / "beir" / task.relative_path
    dataset = load_beir_folder(task, folder)
    if task.fingerprints and dataset.fingerprints != task.fingerprints:
        raise DataError(f"downloaded {task.name} does not match the catalog's sha256 fingerprints")
    return folder


def _check_members(archive: zipfile.ZipFile, root: str) -> None:
    """Refuse archives whose members would land outside their own top folder."""
    for name in archive.namelist():
        parts = Path(name).parts
        if not parts or parts[0] != root or ".." in parts or Path(name).is_absolute():
            raise DataError(f"unexpected member '{name}' in the {root} archive")


def load_dataset(task: TaskSpec, data_dir: Path | None = None, download: bool = True) -> Dataset:
    if task.is_aggregate:
        raise DataError(f"task '{task.name}' is the mean of its subtasks; load those one by one")
    return load_beir_folder(task, resolve_folder(task, data_dir, download))

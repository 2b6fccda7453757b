"""Second download source: the task's MTEB dataset on the Hugging Face Hub, pinned to the
revision in the catalog, written into the cache as an ordinary BEIR folder.

Used when the BEIR server cannot be reached. The files are re-serialized, so their sha256
fingerprints differ from the BEIR zip's: results computed from them are, correctly, not
comparable with results computed from the official files.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from benchmark.catalog.tasks import TaskSpec
from benchmark.core.errors import DataError, brief


def _split_of(repo: str, config: str, revision: str, wanted: str) -> str:
    from datasets import get_dataset_split_names

    splits = get_dataset_split_names(repo, config_name=config, revision=revision)
    if wanted in splits:
        return wanted
    if len(splits) == 1:
        return splits[0]
    raise DataError(f"{repo} config '{config}' has no split '{wanted}' (has {splits})")


def _rows(repo: str, config: str, revision: str, split: str):
    from datasets import load_dataset

    return load_dataset(repo, config, split=_split_of(repo, config, revision, split), revision=revision)


def fetch_from_mteb_hub(task: TaskSpec, folder: Path) -> Path:
    """Write corpus.jsonl, queries.jsonl and qrels/<split>.tsv for `task` into `folder`."""
    if task.mteb is None:
        raise DataError(f"task '{task.name}' has no MTEB dataset to download")
    repo, revision = task.mteb.dataset, task.mteb.revision
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        (staging / "qrels").mkdir()
        with (staging / "corpus.jsonl").open("w", encoding="utf-8") as out:
            for row in _rows(repo, "corpus", revision, "corpus"):
                doc_id = str(row.get("_id", row.get("id")))
                out.write(json.dumps({"_id": doc_id, "title": row.get("title") or "",
                                      "text": row["text"]}) + "\n")
        with (staging / "queries.jsonl").open("w", encoding="utf-8") as out:
            for row in _rows(repo, "queries", revision, "queries"):
                query_id = str(row.get("_id", row.get("id")))
                out.write(json.dumps({"_id": query_id, "text": row["text"]}) + "\n")
        with (staging / "qrels" / f"{task.split}.tsv").open("w", encoding="utf-8") as out:
            out.write("query-id\tcorpus-id\tscore\n")
            for row in _rows(repo, "default", revision, task.split):
                out.write(f"{row['query-id']}\t{row['corpus-id']}\t{int(row['score'])}\n")
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    except DataError:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    except Exception as exc:  # network, auth, schema: one line, nothing half-written
        shutil.rmtree(staging, ignore_errors=True)
        detail = brief(exc, 120)
        raise DataError(
            f"cannot fetch {repo}@{revision[:12]} from the Hugging Face Hub "
            f"({type(exc).__name__}: {detail})"
        ) from exc
    return folder

"""Our results as MTEB result files, and MTEB result files as reported numbers.

Export writes the layout of mteb's ResultCache and embeddings-benchmark/results:
`<out>/<org>__<name>/<revision>/<MtebTaskName>.json`, validated with mteb's own TaskResult model,
so `mteb`'s tooling (and its leaderboard scripts) can read our numbers. Import goes the other
way: every retrieval score in MTEB files becomes a cell of a results/reported/<name>.yaml file
(benchmark.results.reported schema), marked as a results-repo number with its file, dataset revision and
mteb version, so the leaderboard shows it as reported, never as reproduced.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmark.catalog.tasks import TaskSpec, all_tasks, get_task
from benchmark.core.errors import MaebenchError
from benchmark.core.files import atomic_write
from benchmark.results.schema import Result

# our metric name <-> the key mteb's retrieval evaluator writes
METRIC_KEYS: dict[str, str] = {
    "nDCG@10": "ndcg_at_10",
    "MRR@10": "mrr_at_10",
    "R@100": "recall_at_100",
    "R@1000": "recall_at_1000",
    "MAP@100": "map_at_100",
}
NO_REVISION = "no_revision_available"  # what mteb writes when a model has no revision
MAX_MTEB_FILE_BYTES = 16 << 20  # one task's scores: a few KB


def mteb_folder_name(result: Result) -> tuple[str, str]:
    """(model folder, revision folder) the way mteb names them."""
    name = result.model.checkpoint or f"maebench/{result.model.name}"
    return name.replace("/", "__"), result.model.revision or NO_REVISION


def to_mteb(result: Result) -> tuple[str, dict[str, Any]]:
    """One result -> (MTEB task name, result-file JSON). Only catalog tasks with an MTEB twin."""
    task = get_task(result.task.name)
    if task.mteb is None:
        raise MaebenchError(f"task {task.name} has no MTEB counterpart; nothing to export")
    scores = {key: result.metrics[ours] for ours, key in METRIC_KEYS.items() if ours in result.metrics}
    scores |= {
        "main_score": result.metrics["nDCG@10"],
        "hf_subset": "default",
        "languages": ["eng-Latn"],
    }
    data = {
        "dataset_revision": task.mteb.revision,
        "task_name": task.mteb.name,
        "mteb_version": None,
        "scores": {result.task.split: [scores]},
        "evaluation_time": round(sum(result.provenance.timings.values()), 3),
        "kg_co2_emissions": None,
        "date": None,
    }
    _validate_with_mteb(data, task.name)
    return task.mteb.name, data


def _validate_with_mteb(data: dict, origin: str) -> None:
    try:
        from mteb.results import TaskResult
    except ImportError:  # mteb is a dependency, but the export format does not need it
        return
    try:
        TaskResult.model_validate(json.loads(json.dumps(data)))
    except ValueError as exc:
        raise MaebenchError(f"{origin}: not a valid MTEB result ({str(exc).splitlines()[0]})") from exc


def export_results(results: list[Result], out_dir: Path) -> list[Path]:
    written = []
    for result in results:
        task_name, data = to_mteb(result)
        model_folder, revision = mteb_folder_name(result)
        path = out_dir / model_folder / revision / f"{task_name}.json"
        try:
            atomic_write(path, (json.dumps(data, indent=2) + "\n").encode("utf-8"))
        except OSError as exc:
            raise MaebenchError(f"cannot write {path}: {exc.strerror or exc}") from exc
        written.append(path)
    return written


def _task_by_mteb_name() -> dict[str, TaskSpec]:
    return {t.mteb.name: t for t in all_tasks() if t.mteb is not None}


def mteb_cells(path: Path, model: str, checkpoint: str | None, origin_path: str) -> list[dict]:
    """The reported-schema cells for one MTEB result file (catalog tasks and metrics only)."""
    from benchmark.core.paths import load_json_bounded

    # bounded, regular files only: `import-mteb /dev/zero` or a FIFO used to hang
    data = load_json_bounded(path, MAX_MTEB_FILE_BYTES, "MTEB result file", error=MaebenchError)
    task_name = data.get("task_name") if isinstance(data, dict) else None
    if not isinstance(task_name, str):
        raise MaebenchError(f"{path}: not an MTEB result file (no task_name)")
    task = _task_by_mteb_name().get(task_name)
    if task is None:
        return []
    scores = data.get("scores") if isinstance(data, dict) else None
    entries = scores.get(task.split) if isinstance(scores, dict) else None
    if not isinstance(entries, list):
        entries = []
    entry = next((e for e in entries if isinstance(e, dict)
                  and e.get("hf_subset", "default") == "default"), None)
    if entry is None:
        raise MaebenchError(f"{path}: no '{task.split}' scores for the default subset")
    revision = data.get("dataset_revision")
    note = f"MTEB task {task_name}, imported from an MTEB result file"
    if task.mteb and revision and revision != task.mteb.revision:
        note += f"; dataset revision {revision} differs from the catalog's {task.mteb.revision}"
    cells = []
    for ours, key in METRIC_KEYS.items():
        if key not in entry:
            continue
        if not isinstance(entry[key], (int, float)) or isinstance(entry[key], bool):
            raise MaebenchError(f"{path}: score '{key}' is not a number")
        cell = {
            "model": model, "system": checkpoint or model, "task": task.name,
            "split": task.split, "metric": ours, "value": round(float(entry[key]), 6),
            "confidence": "high", "note": note,
            "origin": {"path": origin_path, "mteb_version": entry.get("mteb_version")
                       or data.get("mteb_version"), "dataset_revision": revision},
        }
        if checkpoint:
            cell["checkpoint"] = checkpoint
        cells.append(cell)
    return cells


def import_mteb(
    files: list[Path], model: str, checkpoint: str | None, source: dict[str, Any]
) -> str:
    """MTEB result files -> the YAML text of one results/reported file, validated."""
    import yaml

    from benchmark.results.reported import parse_reported

    cells = []
    for path in sorted(files):
        cells.extend(mteb_cells(path, model, checkpoint, source.get("path_prefix", "") + path.name))
    if not cells:
        raise MaebenchError("none of the files holds a catalog task's retrieval scores")
    source = {k: v for k, v in source.items() if k != "path_prefix" and v is not None}
    for cell in cells:
        cell["origin"] = {k: v for k, v in cell["origin"].items() if v is not None}
        if source.get("commit"):
            cell["origin"]["commit"] = source["commit"]
    text = (
        "# Reported numbers imported from MTEB result files by `maebench import-mteb`.\n"
        "# Schema: benchmark/results/reported.py (ReportedFile).\n"
        + yaml.safe_dump({"source": source, "cells": cells}, sort_keys=False, width=100)
    )
    parse_reported(text, "imported MTEB results")
    return text

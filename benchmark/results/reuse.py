"""May the stored result stand in for this run? The one answer, with the reason when it may not.

`maebench run` (skip or "not run"), `maebench reproduce` (reuse or NOT RUN), an aggregate's
subtasks (reuse or refuse) and the Python API `benchmark.run` (return or raise) all ask here,
so a stored result is reused by all of them or by none. Before this module each asked its own
way and they disagreed: with the data folder absent `run` reused what `reproduce` refused, an
aggregate checked the model configuration only, and the API refused what the CLI skipped.

The answer compares the parts of the stored result's EvalKey (benchmark.results.identity) that
are known before a run: the model configuration (the card), the task's evaluation settings
(split, quirks, relevance threshold, subtasks) and the dataset fingerprints. The judged query
set is known only after a run; it follows from the qrels, which the fingerprints cover.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from benchmark.core.errors import MaebenchError
from benchmark.results.identity import EvalKey, config_hash
from benchmark.results.schema import ModelInfo, Result

if TYPE_CHECKING:
    from benchmark.catalog.registry import ModelCard
    from benchmark.catalog.tasks import Fingerprints, TaskSpec

@dataclass(frozen=True)
class StoredResult:
    """What is stored for one (model, task), and whether it may stand in for a fresh run."""

    path: Path
    result: Result | None  # None when the file cannot be read
    why_not: str | None  # None: it stands in; else a phrase ("was computed with ...")

    @property
    def stands_in(self) -> bool:
        return self.why_not is None


def stored_stand_in(
    results_dir: Path, card: ModelCard, task: TaskSpec, data_dir: Path | None = None,
) -> StoredResult | None:
    """The stored result of (card, task) and whether it may stand in for the run that `card`
    on `task` would make now; None when nothing is stored.

    It stands in when it can be read and, in this order, was computed with the card's current
    configuration, evaluated with the catalog's current settings of the task, and computed on
    the data a fresh run would use. That data is the task's folder (the data dir, else
    $MAEBENCH_DATA_DIR, else the cache) when it is here. When the folder is absent the stored
    fingerprints are compared with the catalog's declared ones, the data a fresh run would
    download and check; a task whose catalog entry declares none has nothing to compare, and
    the stored result stands. An aggregate compares no data of its own: its subtasks are
    checked here one by one as the aggregate reuses or runs them.
    """
    from benchmark.results.result_store import read_result, result_path

    path = result_path(results_dir, card.name, task.name)
    if not path.exists():
        return None
    try:
        stored = read_result(path)
    except MaebenchError as exc:
        return StoredResult(path, None, f"cannot be read ({' '.join(str(exc).split())})")
    return StoredResult(path, stored, _why_not(stored, card, task, data_dir))


def _why_not(stored: Result, card: ModelCard, task: TaskSpec, data_dir: Path | None) -> str | None:
    key = EvalKey.of(stored)
    if key.config != config_hash(ModelInfo.from_card(card).config):
        return f"was computed with another configuration of {card.name}"
    now = key.model_copy(update={  # the catalog's settings, the rest as stored
        "split": task.split, "quirks": tuple(sorted(task.quirks)),
        "relevance_threshold": task.relevance_threshold, "subtasks": tuple(task.subtasks)})
    settings = key.differences(now)
    if settings:
        return f"was evaluated with other task settings ({', '.join(settings)})"
    if task.is_aggregate:
        return None
    current, source = data_fingerprints(task, data_dir)
    if current is None:
        return None
    different = key.differences(key.model_copy(update={"fingerprints": current}))
    if different:
        return f"was computed on other data than {source} ({', '.join(different)})"
    return None


def data_fingerprints(task: TaskSpec, data_dir: Path | None) -> tuple[Fingerprints | None, str]:
    """(fingerprints, what they are of) of the data a fresh run of `task` would use: the files
    of its folder when it is here (hashes only, no parsing), else the catalog's declared ones,
    else None (nothing known to compare with)."""
    from benchmark.catalog.tasks import Fingerprints
    from benchmark.core.files import sha256_file
    from benchmark.datasets.beir import resolve_folder

    try:
        folder = resolve_folder(task, data_dir, download=False)
        files = {"corpus": folder / "corpus.jsonl", "queries": folder / "queries.jsonl",
                 "qrels": folder / "qrels" / f"{task.split}.tsv"}
        return (Fingerprints(**{k: sha256_file(p) for k, p in files.items()}),
                f"the data in {folder}")
    except (MaebenchError, OSError, TypeError, ValueError):
        pass  # the folder, or one of its files, is not here
    if task.fingerprints is not None:
        return task.fingerprints, "the catalog's (its data folder is not here)"
    return None, "nothing"

"""The task catalog: which datasets exist, how each is evaluated, and its known quirks.

The catalog is data (`data/tasks.yaml`), validated here; quirks are named values so that every
result records which ones were active and two results evaluated differently never mix.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from benchmark.core.errors import MaebenchError
from benchmark.core.paths import EMBEDDED_DATA_DIR
from benchmark.core.validation import Strict, validate_yaml

QUIRKS: dict[str, str] = {
    "drop_identical_ids": "documents whose id equals the query id are removed from the ranking "
    "before evaluation (BEIR / MTEB ignore_identical_ids)",
    "mean_of_subtasks": "the score is the unweighted mean of the subtasks' scores",
    "touche_v2_qrels": "uses the corrected (v2) Touche-2020 qrels shipped in the BEIR zip",
    "dev_split": "evaluated on the dev split (no public test labels)",
    "graded_relevance": "qrels carry several relevance grades; nDCG uses them as linear gains",
    "not_redistributable": "not on the BEIR download server; the user must build it locally",
    "embedded": "ships inside the maebench package (smoke test, not a benchmark)",
    "trec_relevance_2": "binary metrics (recall, MRR, MAP) count grade >= 2 as relevant, as the "
    "official TREC DL evaluation (trec_eval -l 2); nDCG uses every grade as its gain",
    "trec_files": "queries and qrels come from TREC-format files (topics TSV, `qid Q0 pid grade`) "
    "beside the BEIR corpus they are judged on",
}

Quirk = Literal[
    "drop_identical_ids",
    "mean_of_subtasks",
    "touche_v2_qrels",
    "dev_split",
    "graded_relevance",
    "not_redistributable",
    "embedded",
    "trec_relevance_2",
    "trec_files",
]

MAIN_METRIC = "nDCG@10"


class MtebRef(Strict):
    name: str
    dataset: str
    revision: str


class BeirStats(Strict):
    n_docs: int
    n_queries: int


class Fingerprints(Strict):
    """sha256 of the raw bytes of corpus.jsonl, queries.jsonl and qrels/<split>.tsv."""

    corpus: str
    queries: str
    qrels: str


class TrecFiles(Strict):
    """Queries (`qid<TAB>text`) and qrels (`qid Q0 docid grade`) in TREC formats, as paths
    relative to the data dir or, failing that, to its parent (so `--data-dir shared/data/beir`
    finds `shared/data/msmarco-passage/...`)."""

    queries: str
    qrels: str


class TaskSpec(Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]*$")
    display_name: str
    domain: str
    split: str = "test"
    main_metric: str = MAIN_METRIC
    quirks: tuple[Quirk, ...] = ()
    relevance_threshold: int = 1
    path: str | None = None
    part_of: str | None = None
    subtasks: tuple[str, ...] = ()
    mteb: MtebRef | None = None
    beir_stats: BeirStats | None = None
    fingerprints: Fingerprints | None = None
    # metrics the task's papers report beyond the standard set (MS MARCO dev: R@50)
    metrics: tuple[str, ...] = ()
    trec_files: TrecFiles | None = None

    @model_validator(mode="after")
    def _metrics_known(self) -> TaskSpec:
        from benchmark.evaluation.metrics import Metric

        for name in (*self.metrics, self.main_metric):
            Metric.parse(name)
        if ("trec_files" in self.quirks) != (self.trec_files is not None):
            raise ValueError("a task has trec_files exactly when it has the trec_files quirk")
        if ("trec_relevance_2" in self.quirks) != (self.relevance_threshold == 2):
            raise ValueError("relevance_threshold 2 goes with the trec_relevance_2 quirk")
        return self

    @property
    def evaluation_metrics(self) -> tuple[str, ...]:
        """The standard metrics plus the task's own, in that order."""
        from benchmark.evaluation.metrics import STANDARD_METRICS

        return STANDARD_METRICS + tuple(m for m in self.metrics if m not in STANDARD_METRICS)

    @model_validator(mode="after")
    def _aggregate_has_subtasks(self) -> TaskSpec:
        if ("mean_of_subtasks" in self.quirks) != bool(self.subtasks):
            raise ValueError("a task has subtasks exactly when it has the mean_of_subtasks quirk")
        return self

    @property
    def relative_path(self) -> str:
        """Folder of this task below a BEIR data dir (CQADupStack forums are nested)."""
        return self.path or self.name

    @property
    def is_aggregate(self) -> bool:
        return bool(self.subtasks)

    @property
    def embedded_path(self) -> Path | None:
        return EMBEDDED_DATA_DIR / self.name if "embedded" in self.quirks else None


class Catalog(Strict):
    schema_version: Literal[1]
    beir_url: str
    tasks: tuple[TaskSpec, ...]

    @model_validator(mode="after")
    def _consistent(self) -> Catalog:
        names = [t.name for t in self.tasks]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"duplicate task names: {sorted(dupes)}")
        for task in self.tasks:
            for sub in task.subtasks:
                if sub not in names:
                    raise ValueError(f"task {task.name}: unknown subtask {sub}")
        return self


@lru_cache(maxsize=1)
def load_catalog(path: Path = EMBEDDED_DATA_DIR / "tasks.yaml") -> Catalog:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MaebenchError(f"cannot read the task catalog {path}: {exc.strerror}") from exc
    return validate_yaml(text, Catalog, f"task catalog {path}", MaebenchError, "the task catalog")


def all_tasks() -> tuple[TaskSpec, ...]:
    return load_catalog().tasks


def get_task(name: str) -> TaskSpec:
    """The task of this exact name (stored results and bundles name tasks exactly)."""
    for task in all_tasks():
        if task.name == name:
            return task
    raise _unknown_task(name)


def find_task(text: str) -> TaskSpec:
    """A task as a user types it: its name in any case, or its display name as the site shows
    it (`SciFact`, `TREC-COVID`); an unknown one is an error naming the closest tasks."""
    folded = text.strip().casefold()
    for task in all_tasks():
        if folded in (task.name, task.display_name.casefold()):
            return task
    raise _unknown_task(text)


def _unknown_task(name: str) -> MaebenchError:
    from benchmark.core.errors import did_you_mean

    listed = [t for t in all_tasks() if t.part_of is None]
    names = [t.name for t in all_tasks()]
    hint = did_you_mean(name, names) or did_you_mean(
        name, [t.display_name for t in listed])
    known = ", ".join(t.name for t in listed)
    return MaebenchError(f"unknown task '{name}'{hint} (known: {known})")

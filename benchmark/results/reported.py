"""Published numbers as data: results/reported/<source>.yaml, one file per paper or results repo.

A reported number is only useful next to where it came from (paper, table, arXiv version, or
repository + path + commit), the checkpoint it belongs to and how sure we are that it was
transcribed right, so every cell carries its source and a confidence, and the schema rejects
unknown keys (a typo must not drop a caveat silently). Task names are catalog names and metric
names are ours, so reported and reproduced numbers can be joined without a mapping table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from benchmark.core.errors import MaebenchError
from benchmark.core.validation import Strict, validate_yaml

NAME_PATTERN = r"^[a-z0-9][a-z0-9._\-]{0,79}$"
MAX_FILE_BYTES = 2 << 20  # a paper's tables are a few KB; anything bigger is a mistake

Confidence = Literal["high", "medium-high", "medium", "medium-low", "low"]
SourceKind = Literal[
    "paper",  # the paper's table, read from the paper itself
    "paper-transcription",  # the paper's table, read from a third-party transcription
    "results-repo",  # a results repository (e.g. embeddings-benchmark/results)
    "official-repo",  # the authors' repository (README tables)
    "reproduction",  # an independent reference reproduction (e.g. Pyserini 2CR)
    "model-card",  # a Hugging Face model card
]


class ReportedError(MaebenchError):
    """A results/reported/ file is unreadable or does not match the schema."""


class Source(Strict):
    """Where a file's numbers come from; say which version of the paper where it matters."""

    kind: SourceKind
    title: str
    arxiv: str | None = None
    arxiv_version: str | None = None
    venue: str | None = None
    year: int | None = None
    table: str | None = None
    repo: str | None = None
    path: str | None = None
    commit: str | None = Field(default=None, pattern=r"^[0-9a-f]{7,40}$")
    url: str | None = None
    transcribed_via: str | None = None
    notes: str | None = None


class CellOrigin(Strict):
    """Per-cell location inside a results repository (one JSON file per dataset in MTEB)."""

    path: str
    commit: str | None = Field(default=None, pattern=r"^[0-9a-f]{7,40}$")
    mteb_version: str | None = None
    dataset_revision: str | None = None


class Cell(Strict):
    model: str = Field(pattern=NAME_PATTERN, description="registry card name (models/<model>.yaml)")
    system: str = Field(description="the row label the source uses for this system")
    checkpoint: str | None = None
    task: str = Field(pattern=NAME_PATTERN, description="catalog task name")
    split: str
    metric: str
    value: float = Field(ge=0.0, le=1.0)
    confidence: Confidence
    note: str | None = None
    origin: CellOrigin | None = None

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        from benchmark.evaluation.metrics import Metric

        Metric.parse(value)  # ValueError names the known measures
        return value


class ReportedFile(Strict):
    source: Source
    cells: list[Cell] = Field(min_length=1)


@dataclass(frozen=True)
class ReportedScore:
    """One published number with its source attached (the flat form the site and specs use)."""

    file: str  # stem of the YAML file, e.g. "beir-2021"
    source: Source
    cell: Cell

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.cell.model, self.cell.task, self.cell.metric)

    @property
    def ref(self) -> str:
        """Stable reference used by reproduction specs: <file>:<model>:<task>:<metric>[:system]."""
        return f"{self.file}:{self.cell.model}:{self.cell.task}:{self.cell.metric}"


def parse_reported(text: str, origin: str) -> ReportedFile:
    parsed = validate_yaml(text, ReportedFile, origin, ReportedError, "a reported-scores file")
    _check_catalog(parsed, origin)
    return parsed


def _check_catalog(parsed: ReportedFile, origin: str) -> None:
    from benchmark.catalog.tasks import all_tasks

    tasks = {t.name: t for t in all_tasks()}
    for index, cell in enumerate(parsed.cells):
        task = tasks.get(cell.task)
        if task is None:
            raise ReportedError(f"{origin}: field cells.{index}.task: unknown task '{cell.task}'")
        if cell.split != task.split:
            raise ReportedError(
                f"{origin}: field cells.{index}.split: '{cell.split}' is not the evaluation "
                f"split of {cell.task} ('{task.split}')"
            )


def load_reported_file(path: Path) -> ReportedFile:
    from benchmark.core.validation import read_yaml_text

    text = read_yaml_text(path, ReportedError, MAX_FILE_BYTES)
    return parse_reported(text, str(path))


def load_reported(results_dir: Path | None = None) -> list[ReportedScore]:
    """Every published number under <results_dir>/reported/*.yaml; [] when the folder is absent."""
    from benchmark.results.result_store import reported_dir

    folder = reported_dir(results_dir)
    if not folder.is_dir():
        return []
    scores: list[ReportedScore] = []
    for path in sorted(folder.glob("*.yaml")):
        parsed = load_reported_file(path)
        scores.extend(ReportedScore(path.stem, parsed.source, cell) for cell in parsed.cells)
    return scores

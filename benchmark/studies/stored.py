"""The files a study keeps, read back like any other stored file (issue 27, class 1).

`pilot.json`, `diagnostics.json` and the study report (`results/studies/<id>.json`, read by
`maebench site`) are written by maebench, but they sit in a folder anyone can edit, copy or
damage, and each one steers what comes after it: the pilot's winner becomes every cell's
learning rate, the diagnostics decide which arms failed, the report becomes a site page. So
each is read bounded from a regular file (a FIFO or device is refused at once, never waited
on), parsed into a validated model (types, ranges, finite numbers) and, when it is not what
maebench writes, refused with one line naming the file. The models allow extra fields, so
older and newer files with more keys still load; what they check is what is read.

The validated models gate the data; callers keep the raw mappings (their rendering and
reports stay byte-identical to before).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from benchmark.core.errors import MaebenchError
from benchmark.core.validation import first_error

MAX_STUDY_FILE_BYTES = 64 << 20  # a 7-arm x 3-seed report is ~100 KB; diagnostics of 1,000 cards ~300 KB


class StoredStudyFileError(MaebenchError):
    """A file a study keeps (pilot, diagnostics, report) is not what maebench writes."""


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _not_nan(value: float) -> float:
    if math.isnan(value):
        raise ValueError("must be a number (not NaN)")
    return value


Finite = Annotated[float, AfterValidator(_finite)]
Share = Annotated[float, Field(ge=0.0, le=1.0), AfterValidator(_finite)]
Positive = Annotated[float, Field(gt=0.0), AfterValidator(_finite)]
NonNegative = Annotated[float, Field(ge=0.0), AfterValidator(_finite)]


class _Loose(BaseModel):
    """Extra keys allowed (older and newer files); strict types on what is read."""

    model_config = ConfigDict(extra="allow", strict=True)


def read_json_file(path: Path, what: str, *, allow_infinity: bool = False) -> Any:
    """The JSON value of `path`, a regular file of at most MAX_STUDY_FILE_BYTES: a FIFO,
    device or link to one is refused before anything waits on it. NaN is never accepted;
    Infinity only where maebench itself writes it (a diagnostics spread)."""
    from benchmark.core.files import read_regular_text

    text = read_regular_text(path, MAX_STUDY_FILE_BYTES, what, error=StoredStudyFileError)

    def constant(name: str) -> float:
        if allow_infinity and name == "Infinity":
            return math.inf
        raise ValueError(f"non-finite number {name}")

    try:
        return json.loads(text, parse_constant=constant)
    except (ValueError, RecursionError) as exc:
        raise StoredStudyFileError(f"{path}: {what} is not valid JSON ({type(exc).__name__})") from exc


def _validated(raw: Any, schema: type[BaseModel], path: Path, what: str) -> BaseModel:
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        raise StoredStudyFileError(f"{path}: {what}: {first_error(exc)}") from None


# --------------------------------------------------------------------------- pilot


class PilotRecord(_Loose):
    """`pilot.json`: the pilot's candidate rates, their held-out scores and (once finished)
    the winner. The winner must be a candidate with a stored score, and the best one by the
    pilot's rule (highest score, a tie to the smaller rate): a recorded winner that is not is
    refused, never used as every cell's learning rate. (Records from older versions may lack
    the descriptive fields; the candidates are then the scored rates.)"""

    arm: str | None = None
    metric: str | None = None
    n_held_out: int | None = Field(default=None, ge=1)
    n_train: int | None = Field(default=None, ge=0)
    learning_rates: list[Positive] | None = Field(default=None, min_length=2)
    scores: dict[str, Share] = Field(default_factory=dict)
    chosen_lr: Positive | None = None
    setting: dict[str, Any] | None = None

    def candidates(self) -> set[str]:
        """The candidate rates as score keys (repr of the float, as run_pilot writes them)."""
        if self.learning_rates is None:
            return set(self.scores)
        return {repr(float(lr)) for lr in self.learning_rates}

    @model_validator(mode="after")
    def _winner_is_a_scored_candidate(self) -> PilotRecord:
        candidates = self.candidates()
        for key in self.scores:
            if key not in candidates:
                raise ValueError(f"a score for {key!r}, which is not one of the candidate rates")
            try:
                _finite(float(key))
            except ValueError:
                raise ValueError(f"score key {key!r} is not a learning rate") from None
        if self.chosen_lr is None:
            return self
        chosen = repr(float(self.chosen_lr))
        if chosen not in candidates:
            raise ValueError(f"chosen_lr {self.chosen_lr:g} is not one of the candidate rates "
                             f"{', '.join(f'{float(r):g}' for r in sorted(candidates, key=float))}")
        if chosen not in self.scores:
            raise ValueError(f"chosen_lr {self.chosen_lr:g} has no stored score")
        if set(self.scores) != candidates:
            raise ValueError("a winner is recorded before every candidate rate was scored")
        best = min(self.scores, key=lambda k: (-self.scores[k], float(k)))
        if best != chosen:
            raise ValueError(f"chosen_lr {self.chosen_lr:g} is not the best stored score "
                             f"({float(best):g} is)")
        return self


def load_pilot(path: Path) -> dict[str, Any] | None:
    """The raw mapping of a valid `pilot.json`, None when there is none; else one line."""
    if not _present(path):
        return None
    raw = read_json_file(path, "pilot record")
    if not isinstance(raw, dict):
        raise StoredStudyFileError(f"{path}: pilot record must be a JSON object")
    _validated(raw, PilotRecord, path, "pilot record")
    return raw


def pilot_rates(raw: dict[str, Any]) -> set[float]:
    """Every rate a (validated) pilot record names: candidates, scored and chosen."""
    record = PilotRecord.model_validate(raw)
    rates = {float(k) for k in record.candidates()}
    return rates | ({record.chosen_lr} if record.chosen_lr is not None else set())


# --------------------------------------------------------------------------- diagnostics


class DiagnosticsEntry(_Loose):
    """One card's collapse diagnostics (studies.collapse); older entries lack the centred
    measures, which are then measured again."""

    mean_pairwise_cosine: Finite
    centred_dimensions: NonNegative | None = None
    spread: Annotated[float, Field(ge=0.0), AfterValidator(_not_nan)] | None = None  # inf: mean is 0
    top10_overlap: Share | None = None
    anisotropic: bool | None = None
    collapsed: bool | None = None
    reason: str | None = None
    task: str | None = None
    n_docs: int | None = Field(default=None, ge=0)


class DiagnosticsFile(BaseModel):
    model_config = ConfigDict(strict=True)

    entries: dict[str, DiagnosticsEntry]


def load_diagnostics(path: Path) -> dict[str, Any]:
    """The raw mapping card -> diagnostics of a valid `diagnostics.json` ({} when absent)."""
    if not _present(path):
        return {}
    raw = read_json_file(path, "diagnostics", allow_infinity=True)
    if not isinstance(raw, dict):
        raise StoredStudyFileError(f"{path}: diagnostics must be a JSON object (card -> measures)")
    try:
        DiagnosticsFile.model_validate({"entries": raw})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"][1:]) or "(top level)"
        raise StoredStudyFileError(f"{path}: diagnostics: field {where}: {err['msg']}") from None
    return raw


# --------------------------------------------------------------------------- report


class _Contrast(_Loose):
    arm: str
    against: str | None = None  # older reports: the baseline arm
    diff: Finite | None = None
    ci_low: Finite | None = None
    ci_high: Finite | None = None
    p_value: Share | None = None
    p_holm: Share | None = None
    failed: bool = False


class _TaskStats(_Loose):
    mean: Finite | None = None
    std: NonNegative | None = None
    n_seeds: int = Field(default=0, ge=0)
    spread: Finite | None = None
    per_seed: list[Finite] = Field(default_factory=list)


class _Hardware(_Loose):
    cpu: str | None = None
    cpu_count: int | None = None
    gpu: str | None = None


class _Cell(_Loose):
    seed: int = Field(ge=0)
    card: str | None = None
    pretrain_steps: int | None = Field(default=None, ge=0)
    pretrain_tokens: NonNegative | None = None
    pretrain_wall_s: NonNegative | None = None
    pretrain_cpu_s: NonNegative | None = None
    finetune_wall_s: NonNegative | None = None
    eval_wall_s: NonNegative | None = None
    hardware: _Hardware | None = None


class _Arm(_Loose):
    objective: str | None
    tasks: dict[str, _TaskStats] = Field(default_factory=dict)
    cells: list[_Cell] = Field(default_factory=list)
    zero_shot: dict[str, Finite | None] | None = None
    pretrain_tokens_mean: NonNegative | None = None
    pretrain_wall_s_mean: NonNegative | None = None
    pretrain_cpu_s_mean: NonNegative | None = None
    pretrain_flops_mean: NonNegative | None = None
    failed: bool = False
    failure: str | None = None
    diagnostics: DiagnosticsEntry | None = None


class _ArmName(_Loose):
    name: str


class _Backbone(_Loose):
    corpus: str
    vocab_size: int
    layers: int
    hidden: int
    heads: int
    ffn: int


class _Finetune(_Loose):
    task: str
    recipe: str


class _Stage0Spec(_Loose):
    objective: str


class _Study(_Loose):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]{0,30}$")
    description: str
    evaluate: list[str] = Field(min_length=1)
    arms: list[_ArmName] = Field(min_length=1)
    baseline_arm: str
    seeds: list[int] = Field(min_length=1)
    question: str | None = None
    can_say: str | None = None
    cannot_say: str | None = None
    confounds: list[str] = Field(default_factory=list)
    init: str | None = None
    backbone: _Backbone | None = None
    stage0: _Stage0Spec | None = None
    corpus: str
    pretrain_seed: int | None = None
    finetune: _Finetune
    collapse_overlap: Share | None = None
    collapse_dimensions: NonNegative | None = None


class _Stage0(_Loose):
    tokens: NonNegative | None = None
    steps: int | None = Field(default=None, ge=0)
    cpu_s: NonNegative | None = None


class _ExploratoryEntry(_Loose):
    mean: Finite | None = None
    per_seed: list[Finite] = Field(default_factory=list)
    zero_shot: Finite | None = None


class _Exploratory(_Loose):
    arms: dict[str, dict[str, _ExploratoryEntry]] = Field(default_factory=dict)
    comparisons: dict[str, list[_Contrast]] = Field(default_factory=dict)


class StudyReport(_Loose):
    """`results/studies/<id>.json` as the site and `maebench study --report-only` read it."""

    study: _Study
    metric: str
    budget: str
    complete: bool
    missing_cells: list[str] = Field(default_factory=list)
    method: str = ""
    stage0: _Stage0 | None = None
    pilot: PilotRecord | None = None
    arms: dict[str, _Arm]
    comparisons: dict[str, list[_Contrast]] = Field(default_factory=dict)
    secondary: dict[str, list[_Contrast]] | None = None
    exploratory: dict[str, _Exploratory] | None = None
    zero_shot_comparisons: dict[str, dict[str, list[_Contrast]]] | None = None


def load_report(path: Path) -> dict[str, Any]:
    """The raw mapping of a valid study report; a damaged one is one line naming the file."""
    raw = read_json_file(path, "study report")
    if not isinstance(raw, dict):
        raise StoredStudyFileError(f"{path}: study report must be a JSON object")
    _validated(raw, StudyReport, path, "study report")
    return raw


def _present(path: Path) -> bool:
    """Whether anything (a file, a FIFO, a dangling link) is at `path`: absence is the only
    state that reads as 'not written yet'; everything else is read, or refused."""
    return path.is_symlink() or path.exists()


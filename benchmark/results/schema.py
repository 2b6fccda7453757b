"""The result schema (versioned): what a stored result holds, and its validation.

This module only describes and validates (pydantic models, bounds on untrusted numbers and
nesting, the recorded EvalKey). Where results live on disk, how they are written and read back
and how their run files are encoded belong to the results store (benchmark.results.result_store and
benchmark.results.runfiles), the one owner of the results/ tree.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from benchmark.catalog.tasks import Fingerprints
from benchmark.core.errors import ResultError
from benchmark.core.validation import StrictRecord, validate
from benchmark.results.identity import EvalKey

if TYPE_CHECKING:
    from benchmark.catalog.registry import ModelCard

SCHEMA_VERSION = 1
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._\-]{0,79}$")


class ModelInfo(StrictRecord):
    name: str = Field(pattern=NAME_RE.pattern)
    display_name: str
    family: str
    kind: Literal["bm25", "dense"]
    checkpoint: str | None = None
    revision: str | None = None
    config: dict[str, Any]

    @classmethod
    def from_card(cls, card: ModelCard) -> ModelInfo:
        """What a result records of the card it was computed with. The config is the card's
        retriever section as stored, so EvalKey's config part compares a stored result with
        the current card (benchmark.results.identity.same_config)."""
        config = card.retriever
        checkpoint = (getattr(config, "checkpoint", None)
                      or getattr(config, "query_checkpoint", None))
        return cls(
            name=card.name,
            display_name=card.display_name,
            family=card.family,
            kind=config.kind,
            checkpoint=checkpoint,
            revision=getattr(config, "revision", None),
            config=config.model_dump(mode="json"),
        )


class TaskInfo(StrictRecord):
    name: str = Field(pattern=NAME_RE.pattern)
    split: str
    quirks: list[str]
    relevance_threshold: int
    fingerprints: Fingerprints | None
    n_docs: int | None
    n_queries: int
    subtasks: list[str] = []
    warnings: list[str] = []


class RunInfo(StrictRecord):
    file: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    depth: int = Field(gt=0)
    format: Literal["trec.gz"] = "trec.gz"


class Provenance(StrictRecord):
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


class Result(StrictRecord):
    schema_version: Literal[1] = SCHEMA_VERSION
    model: ModelInfo
    task: TaskInfo
    metrics: dict[str, float]
    per_query: dict[str, dict[str, float]]
    run: RunInfo | None
    provenance: Provenance
    # the evaluation's identity when it was stored (benchmark.results.identity); decisions always use
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


def with_eval_key(result: Result) -> Result:
    """The result with its EvalKey (recomputed from its fields) recorded."""
    return result.model_copy(update={"eval_key": EvalKey.of(result)})


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



"""EvalKey: the one identity of an evaluation, used by every comparability and reuse decision.

Two results may be compared (compare, the site, submit's leaderboard rows) when their *data*
parts are equal: task, split, quirks, relevance threshold, subtasks, dataset fingerprints and
the set of judged queries. A stored result may stand in for a fresh run (the runner's skip and
aggregate reuse, reproduce, submit's stale-card check, the site's "config differs from the
current card" mark) only when the whole key is equal, the model's configuration included
(before a run, benchmark.results.reuse compares the parts known without running it).

Before this module, compare, submit, reproduce and the runner each had their own check, and
they had drifted apart (submit ignored the query set, reproduce ignored the quirks).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict

from benchmark.catalog.tasks import Fingerprints

DATA_FIELDS = (
    "task", "split", "quirks", "relevance_threshold", "subtasks", "fingerprints", "query_set",
)
_LABELS = {
    "relevance_threshold": "relevance threshold",
    "fingerprints": "dataset fingerprints",
    "query_set": "query set",
    "config": "model configuration",
}


def _sha256_json(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=True).encode()).hexdigest()


def normal_config(config: dict) -> dict:
    """The card config in the current schema's normal form: a config stored before a new
    (defaulted) card field existed gets that default, so it still counts as the same model."""
    from pydantic import TypeAdapter, ValidationError

    from benchmark.catalog.registry import RetrieverConfig

    try:
        return TypeAdapter(RetrieverConfig).validate_python(config).model_dump(mode="json")
    except ValidationError:
        return config


def config_hash(config: dict) -> str:
    return _sha256_json(normal_config(config))


def query_set_hash(query_ids) -> str:
    return _sha256_json(sorted(query_ids))


class EvalKey(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str
    split: str
    quirks: tuple[str, ...]
    relevance_threshold: int
    subtasks: tuple[str, ...] = ()
    fingerprints: Fingerprints | None
    query_set: str  # sha256 of the sorted judged query ids
    config: str  # sha256 of the model's configuration (normal form)

    @classmethod
    def of(cls, result) -> EvalKey:
        """The key of a stored or new Result, always recomputed from its fields."""
        task = result.task
        queries: set[str] = set()
        for scores in result.per_query.values():
            queries.update(scores)
        return cls(
            task=task.name,
            split=task.split,
            quirks=tuple(sorted(task.quirks)),
            relevance_threshold=task.relevance_threshold,
            subtasks=tuple(task.subtasks),
            fingerprints=task.fingerprints,
            query_set=query_set_hash(queries),
            config=config_hash(result.model.config),
        )

    def data(self) -> dict:
        return self.model_dump(include=set(DATA_FIELDS))

    def data_id(self) -> str:
        """A short stable id of the data part (groups of comparable results)."""
        return _sha256_json(self.model_dump(mode="json", include=set(DATA_FIELDS)))[:16]

    def differences(self, other: EvalKey, with_config: bool = True) -> list[str]:
        """Readable names of the parts that differ ('dataset fingerprints (corpus)', ...)."""
        fields = DATA_FIELDS + (("config",) if with_config else ())
        out = []
        for name in fields:
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine == theirs:
                continue
            label = _LABELS.get(name, name)
            if name == "fingerprints" and mine is not None and theirs is not None:
                parts = [f for f in ("corpus", "queries", "qrels") if getattr(mine, f) != getattr(theirs, f)]
                label = f"{label} ({', '.join(parts)})"
            out.append(label)
        return out

    def comparable(self, other: EvalKey) -> bool:
        return not self.differences(other, with_config=False)

    def same_evaluation(self, other: EvalKey) -> bool:
        return self == other


def same_config(stored: dict, current: dict) -> bool:
    """Equal model configurations after normalising both to the current schema."""
    return stored == current or config_hash(stored) == config_hash(current)

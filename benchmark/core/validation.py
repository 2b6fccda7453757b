"""Turning untrusted YAML/JSON data into validated pydantic objects, with one-line errors.

Cards, reported scores, reproduction specs and results all need the same three steps (safe
parse, must be a mapping, schema validation) and the same error shape: `<origin>: field
<dotted.path>: <message>`, so a user sees which file and which field is wrong.
"""

from __future__ import annotations

from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from benchmark.core.errors import MaebenchError

Model = TypeVar("Model", bound=BaseModel)


class Strict(BaseModel):
    """The base of what is declared in a file (cards, tasks, benchmarks, reported scores,
    reproduction specs): a key the schema does not name is an error rather than dropped (a
    misspelt field would otherwise leave its default in force, unsaid), and a loaded object is
    frozen, so what was validated is what runs (and it can be hashed and shared)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class StrictFinite(Strict):
    """Strict, and no inf or NaN anywhere: a study spec takes numbers from `--set` overrides,
    where `scale=inf` reached int(round(inf)) deep in the runner. Only there, because elsewhere
    refusing them would change what files load."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class StrictRecord(BaseModel):
    """Strict about keys but not frozen: a stored result (benchmark.results.schema) has never
    been frozen, and loaded results are amended in place (the site's tests plant runtimes,
    metrics and per-query scores into them), so freezing it would be a change of behaviour."""

    model_config = ConfigDict(extra="forbid")


def first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "(top level)"
    return f"field {where}: {err['msg']}"


def validate(raw: Any, schema: type[Model], origin: str, error: type[MaebenchError]) -> Model:
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        raise error(f"{origin}: {first_error(exc)}") from exc


MAX_NESTING = 64
MAX_YAML_BYTES = 8 << 20


def _nesting_bound(text: str) -> int:
    """An upper bound on the nesting depth of `text`: every level needs a flow bracket, a block
    indicator ('-', '?', ':') or a new (more indented) line. Block style (`- - - x`, or one
    key per line) nests without any bracket, which the old bracket-only bound missed."""
    return text.count("\n") + 1 + sum(text.count(c) for c in "[{-?:")


def _check_nesting(text: str, origin: str, error: type[MaebenchError]) -> None:
    """Refuse YAML nested deeper than MAX_NESTING before building it: libyaml's composer
    recurses natively and a few KB of `[[[[...` or `- - - ...` crash the process (SIGSEGV),
    which no exception handler can catch. The pure-Python event parser is iterative, so it
    measures the depth safely; it runs whenever the cheap bound says the depth could exceed it."""
    if len(text) > MAX_YAML_BYTES:
        raise error(f"{origin}: larger than {MAX_YAML_BYTES} bytes")
    if _nesting_bound(text) <= MAX_NESTING:
        return
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > MAX_NESTING:
                raise error(f"{origin}: nested deeper than {MAX_NESTING} levels")
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1


def read_yaml_text(path, error: type[MaebenchError], limit: int = MAX_YAML_BYTES) -> str:
    """A YAML (or JSON) file maebench is handed, read bounded: a regular file (no /dev/zero,
    no FIFO that would wait forever), at most `limit` bytes, UTF-8; else one line."""
    from benchmark.core.paths import read_text_bounded

    return read_text_bounded(path, limit, "file", error=error)


def load_yaml_mapping(text: str, origin: str, error: type[MaebenchError], what: str) -> dict:
    """Safe-load `text` as a mapping, bounded in size and nesting (the C loader when built; it
    too constructs only plain data). For files that are validated after some pre-processing."""
    try:
        _check_nesting(text, origin, error)
        raw = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise error(f"{origin}: not valid YAML ({exc.__class__.__name__})") from exc
    if not isinstance(raw, dict):
        raise error(f"{origin}: {what} must be a YAML mapping")
    return raw


def validate_yaml(
    text: str, schema: type[Model], origin: str, error: type[MaebenchError], what: str
) -> Model:
    """load_yaml_mapping, then the schema."""
    return validate(load_yaml_mapping(text, origin, error, what), schema, origin, error)

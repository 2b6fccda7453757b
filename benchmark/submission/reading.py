"""Reading a submitted bundle as untrusted input: its files listed, read and parsed within Limits.

Nothing in a bundle is executed (YAML safe_load without aliases, JSON, gzip text; never pickle),
every file is size-bounded before it is read, and every name must match the results/ name
pattern so no path can escape results/ or models/. A submitted card names weights anyone can
fetch: a Hugging Face Hub id pinned to a commit or to the sha256 of the weights.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import yaml

from benchmark.catalog.registry import ModelCard, parse_card
from benchmark.core.errors import MaebenchError
from benchmark.results.schema import Result, parse_result

FILE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._\-]{0,120}$")
# A submitted card names weights anyone can fetch: a Hugging Face Hub id pinned to a commit (or
# to the sha256 of the weights), never a local path (`/etc`, `../models`, `home:...`) or an
# installed module to import (`local_package: this` would run it).
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.\-]{0,95}$")
PINNED_REVISION_RE = re.compile(r"^(?:[0-9a-f]{40}|sha256:[0-9a-f]{64})$")

class SubmissionError(MaebenchError):
    """A submitted bundle was rejected; the message names the file and the field."""


@dataclass(frozen=True)
class Limits:
    """Upper bounds on what a bundle may make us read (MS MARCO top-100 is ~15 MB gzipped)."""

    max_files: int = 200
    max_card_bytes: int = 64 << 10
    max_json_bytes: int = 64 << 20
    max_run_bytes: int = 128 << 20
    max_run_uncompressed: int = 256 << 20
    max_run_lines: int = 2_000_000  # MS MARCO dev at depth 100 is 0.7M
    max_total_bytes: int = 2 << 30
    min_depth: int = 100


def list_bundle(bundle: Path, limits: Limits) -> dict[str, int]:
    """Names and sizes of the bundle's plain files; links, folders and odd names are refused."""
    try:
        info = os.lstat(bundle)
    except OSError as exc:
        raise SubmissionError(f"{bundle}: cannot open bundle ({exc.strerror})") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise SubmissionError(f"{bundle}: a bundle must be a folder (not a link or a file)")
    files: dict[str, int] = {}
    total = 0
    for entry in os.scandir(bundle):
        where = f"{bundle}/{entry.name}"
        if not FILE_NAME_RE.fullmatch(entry.name):
            raise SubmissionError(f"{where}: file names must be lowercase letters, digits, '.', '-', '_'")
        entry_stat = entry.stat(follow_symlinks=False)
        if not stat.S_ISREG(entry_stat.st_mode):
            raise SubmissionError(f"{where}: only plain files are allowed (no links or folders)")
        files[entry.name] = entry_stat.st_size
        total += entry_stat.st_size
        if len(files) > limits.max_files:
            raise SubmissionError(f"{bundle}: more than {limits.max_files} files")
    if total > limits.max_total_bytes:
        raise SubmissionError(f"{bundle}: bundle larger than {limits.max_total_bytes} bytes")
    return files


def read_bounded(path: Path, limit: int) -> bytes:
    try:
        with open(path, "rb", opener=_no_follow_opener) as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise SubmissionError(f"{path}: cannot read ({exc.strerror})") from exc
    if len(data) > limit:
        raise SubmissionError(f"{path}: larger than the limit of {limit} bytes")
    return data


def _no_follow_opener(path: str, flags: int) -> int:
    return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0))


def _reject_yaml_aliases(text: str, origin: str) -> None:
    """Anchors/aliases let a few bytes expand into huge structures; a card never needs them."""
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise SubmissionError(f"{origin}: YAML anchors/aliases are not allowed in a card")
    except yaml.YAMLError as exc:
        raise SubmissionError(f"{origin}: not valid YAML ({exc.__class__.__name__})") from exc


def read_bundle_card(bundle: Path, files: dict[str, int], limits: Limits) -> tuple[ModelCard, str]:
    cards = sorted(n for n in files if n.endswith((".yaml", ".yml")))
    if len(cards) != 1:
        raise SubmissionError(f"{bundle}: expected exactly one model card (*.yaml), found {len(cards)}")
    path = bundle / cards[0]
    try:
        text = read_bounded(path, limits.max_card_bytes).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SubmissionError(f"{path}: not UTF-8 text") from exc
    _reject_yaml_aliases(text, str(path))
    try:
        card = parse_card(text, str(path))
    except MaebenchError as exc:
        raise SubmissionError(str(exc)) from exc
    if Path(cards[0]).stem != card.name:
        raise SubmissionError(f"{path}: field name: card name '{card.name}' must match the file name")
    _check_card_sources(card, str(path))
    return card, text


def _check_card_sources(card: ModelCard, origin: str) -> None:
    """Hub checkpoints pinned to a revision only (see HUB_ID_RE), and sizes a page can show."""
    for name, limit in (("parameters", 10**13), ("embedding_dim", 10**6)):
        value = getattr(card, name, None)
        if value is not None and value > limit:
            raise SubmissionError(f"{origin}: field {name}: {value} is larger than {limit:.0e}")
    config = card.retriever
    if config.kind != "dense":
        return
    if getattr(config, "local_package", None):
        raise SubmissionError(
            f"{origin}: field retriever.local_package: not allowed in a submitted card (it names "
            "a module to import); name a hub checkpoint with a revision"
        )
    for name in ("checkpoint", "query_checkpoint", "passage_checkpoint"):
        value = getattr(config, name, None)
        if value is None:
            continue
        if not HUB_ID_RE.fullmatch(value) or ".." in value.split("/"):
            raise SubmissionError(
                f"{origin}: field retriever.{name}: '{value[:80]}' is not a Hugging Face Hub id "
                "(org/name); submitted cards cannot name local paths"
            )
    revision = getattr(config, "revision", None)
    if revision is None or not PINNED_REVISION_RE.fullmatch(revision):
        raise SubmissionError(
            f"{origin}: field retriever.revision: a submitted card pins its checkpoint to a "
            "40-hex commit or sha256:<weights digest>"
        )


def read_bundle_result(path: Path, limits: Limits) -> Result:
    data = read_bounded(path, limits.max_json_bytes)
    try:
        raw = json.loads(data.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise SubmissionError(f"{path}: not valid JSON ({exc.__class__.__name__})") from exc
    except ValueError as exc:
        raise SubmissionError(f"{path}: {exc}") from exc
    try:
        return parse_result(raw, str(path))
    except MaebenchError as exc:
        raise SubmissionError(str(exc)) from exc


def _reject_constant(name: str) -> float:
    raise ValueError(f"non-finite number {name} is not allowed")

"""Validating a submitted bundle (model card + result JSONs + run files) and adding it to results/.

A bundle is untrusted input. Nothing in it is executed (YAML safe_load without aliases, JSON,
gzip text; never pickle), every file is size-bounded before it is read, every name must match
the results/ name pattern so no path can escape results/ or models/, and every number it claims
is recomputed from its run file against the qrels we hold. Nothing in results/ or models/
changes until the whole bundle has been accepted; then all files are staged inside results/
(and models/) and renamed into place, and a failure half way restores what was there.

Metrics whose cutoff exceeds the stored run depth (R@1000 from a top-100 run) cannot be
recomputed from the run file. For those we check what can be checked -- per query, the value is
a recall in [0, 1] no smaller than the recomputed recall at the run's depth (recall only grows
with the cutoff), the aggregate is the mean of the per-query values -- and the report names
them as "bounds only". A bundle whose run depth reaches the cutoff gets them recomputed exactly.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from benchmark.catalog.registry import ModelCard, parse_card
from benchmark.catalog.tasks import TaskSpec
from benchmark.core.errors import MaebenchError
from benchmark.results.runfiles import decode_run, sha256_bytes
from benchmark.results.schema import NAME_RE, ModelInfo, Result, parse_result
from benchmark.results.store import (
    RESERVED_DIRS,
    dump_result,
    result_path,
    run_path,
    stored_runs,
    stored_tasks,
)

TOLERANCE = 1e-6
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


@dataclass
class CheckedResult:
    """A result that passed every check, with what to write and what could not be recomputed."""

    result: Result
    run_bytes: bytes | None
    bounds_only: list[str] = field(default_factory=list)
    json_bytes: bytes = b""  # serialised during validation; the commit writes these bytes
    existed: bool = False  # a result was stored at validation time (replaced with --replace)
    previous: Result | None = None
    already_stored: bool = False  # the same result and run are stored already (nothing to write)


@dataclass
class Submission:
    card: ModelCard
    card_text: str
    card_is_new: bool
    card_replaces: bool
    results: list[CheckedResult]
    # accepted, but a reviewer must read these: the model would not reach the leaderboard, or it
    # duplicates a model already here (same weights, or the same run under another name)
    warnings: list[str] = field(default_factory=list)

    @property
    def model(self) -> str:
        return self.card.name


# --------------------------------------------------------------------------- reading the bundle


def _list_bundle(bundle: Path, limits: Limits) -> dict[str, int]:
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


def _read_bounded(path: Path, limit: int) -> bytes:
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


def _load_card(bundle: Path, files: dict[str, int], limits: Limits) -> tuple[ModelCard, str]:
    cards = sorted(n for n in files if n.endswith((".yaml", ".yml")))
    if len(cards) != 1:
        raise SubmissionError(f"{bundle}: expected exactly one model card (*.yaml), found {len(cards)}")
    path = bundle / cards[0]
    try:
        text = _read_bounded(path, limits.max_card_bytes).decode("utf-8")
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


def _load_result(path: Path, limits: Limits) -> Result:
    data = _read_bounded(path, limits.max_json_bytes)
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


# --------------------------------------------------------------------------- checking one result


def _close(a: float, b: float) -> bool:
    return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= TOLERANCE


def _check_identity(origin: str, result: Result, card: ModelCard, task_name: str) -> None:
    from benchmark.catalog.tasks import get_task
    from benchmark.results.identity import same_config

    expected = ModelInfo.from_card(card)
    differing = [
        k for k in ("name", "display_name", "family", "kind", "checkpoint", "revision")
        if getattr(result.model, k) != getattr(expected, k)
    ]
    if not same_config(result.model.config, expected.config):
        differing.append("config")
    if differing:
        raise SubmissionError(
            f"{origin}: field model.{differing[0]}: does not match the bundle's model card"
        )
    if result.task.name != task_name:
        raise SubmissionError(f"{origin}: field task.name: '{result.task.name}' does not match the file name")
    try:
        task = get_task(task_name)
    except MaebenchError as exc:
        raise SubmissionError(f"{origin}: field task.name: {exc}") from exc
    if result.task.split != task.split:
        raise SubmissionError(
            f"{origin}: field task.split: '{result.task.split}' is not the evaluation split "
            f"'{task.split}' of {task.name}"
        )
    if result.task.quirks != list(task.quirks):
        raise SubmissionError(
            f"{origin}: field task.quirks: {result.task.quirks} differ from the catalog's {list(task.quirks)}"
        )
    if result.task.relevance_threshold != task.relevance_threshold:
        raise SubmissionError(f"{origin}: field task.relevance_threshold: differs from the catalog's")
    if result.task.subtasks != list(task.subtasks):
        raise SubmissionError(f"{origin}: field task.subtasks: differ from the catalog's")


def _check_metric_names(origin: str, result: Result, task: TaskSpec) -> None:
    """Exactly the metrics `maebench run` computes for this task (the standard set plus the
    task's own, e.g. MS MARCO's R@50): a submission claims no more and no fewer."""
    expected = list(task.evaluation_metrics)
    if sorted(result.metrics) != sorted(expected):
        raise SubmissionError(f"{origin}: field metrics: expected exactly {expected}")
    if sorted(result.per_query) != sorted(expected):
        raise SubmissionError(f"{origin}: field per_query: expected exactly {expected}")


def _check_claims(
    origin: str,
    result: Result,
    recomputed: dict[str, dict[str, float]],
    query_ids: set[str],
    depth: int | None,
) -> list[str]:
    """Compare claimed per-query scores and aggregates with recomputed ones; returns the
    metrics that could only be bounds-checked (cutoff beyond the run depth)."""
    from benchmark.evaluation.metrics import Metric

    bounds_only = []
    for metric, claimed in result.per_query.items():
        if set(claimed) != query_ids:
            missing = sorted(query_ids - set(claimed))[:3]
            extra = sorted(set(claimed) - query_ids)[:3]
            raise SubmissionError(
                f"{origin}: field per_query.{metric}: query ids differ from the qrels "
                f"(missing {missing}, unexpected {extra})"
            )
        values = list(claimed.values())
        if not all(math.isfinite(v) for v in values):
            raise SubmissionError(f"{origin}: field per_query.{metric}: non-finite score")
        mean = sum(values) / len(values)
        if not _close(mean, result.metrics[metric]):
            raise SubmissionError(
                f"{origin}: field metrics.{metric}: {result.metrics[metric]!r} is not the mean of "
                f"its per-query scores ({mean!r})"
            )
        parsed = Metric.parse(metric)
        exact = depth is None or parsed.cutoff <= depth
        if not exact:
            bounds_only.append(metric)
            floor = recomputed.get(f"R@{depth}") if parsed.measure == "R" else None
            for qid, value in claimed.items():
                low = floor[qid] if floor is not None else 0.0
                if value < low - TOLERANCE or value > 1.0 + TOLERANCE:
                    raise SubmissionError(
                        f"{origin}: field per_query.{metric}.{qid}: {value!r} outside the possible "
                        f"range [{low:.6f}, 1] given the run file"
                    )
            continue
        for qid, value in claimed.items():
            if not _close(value, recomputed[metric][qid]):
                raise SubmissionError(
                    f"{origin}: field per_query.{metric}.{qid}: claimed {value!r}, recomputed "
                    f"{recomputed[metric][qid]!r} from the run file"
                )
    return bounds_only


def _check_run(origin: str, run: dict, dataset, drop_self: bool, depth: int) -> None:
    for qid, ranked in run.items():
        if qid not in dataset.qrels:
            raise SubmissionError(f"{origin}: query '{qid}' is not a query of the evaluation split")
        if len(ranked) > depth:
            raise SubmissionError(
                f"{origin}: query '{qid}' has {len(ranked)} lines, more than run.depth {depth}"
            )
        seen: set[str] = set()
        previous = math.inf
        for doc_id, score in ranked:
            if doc_id not in dataset.corpus:
                raise SubmissionError(f"{origin}: query '{qid}': document '{doc_id}' is not in the corpus")
            if doc_id in seen:
                raise SubmissionError(f"{origin}: query '{qid}': document '{doc_id}' ranked twice")
            if not math.isfinite(score) or score > previous:
                raise SubmissionError(
                    f"{origin}: query '{qid}': scores must be finite and non-increasing by rank"
                )
            if drop_self and doc_id == qid:
                raise SubmissionError(
                    f"{origin}: query '{qid}' retrieves itself (task quirk drop_identical_ids)"
                )
            seen.add(doc_id)
            previous = score


def check_result(
    bundle: Path,
    name: str,
    files: dict[str, int],
    card: ModelCard,
    limits: Limits,
    data_dir: Path | None,
) -> CheckedResult:
    """Validate one <task>.json (and its run file) of a bundle against our data."""
    from benchmark.catalog.tasks import get_task
    from benchmark.datasets.beir import load_dataset
    from benchmark.evaluation.metrics import Metric, evaluate

    path = bundle / name
    origin = str(path)
    task_name = name.removesuffix(".json")
    result = _load_result(path, limits)
    _check_identity(origin, result, card, task_name)
    task = get_task(task_name)
    _check_metric_names(origin, result, task)
    if task.is_aggregate:
        raise SubmissionError(
            f"{origin}: {task_name} is the mean of its subtasks; submit the subtasks and run "
            f"`maebench run --task {task_name}` to aggregate them"
        )
    if result.run is None:
        raise SubmissionError(f"{origin}: field run: a submitted result must include its run file")
    run_name = f"{task_name}.run.gz"
    if result.run.file != run_name:
        raise SubmissionError(f"{origin}: field run.file: must be '{run_name}'")
    if run_name not in files:
        raise SubmissionError(f"{bundle / run_name}: run file missing from the bundle")
    if result.run.depth < limits.min_depth:
        raise SubmissionError(f"{origin}: field run.depth: at least {limits.min_depth} is required")
    run_bytes = _read_bounded(bundle / run_name, limits.max_run_bytes)
    if sha256_bytes(run_bytes) != result.run.sha256:
        raise SubmissionError(f"{bundle / run_name}: sha256 does not match field run.sha256 of {name}")
    try:
        run = decode_run(
            run_bytes, str(bundle / run_name), limits.max_run_uncompressed, limits.max_run_lines
        )
    except UnicodeDecodeError as exc:
        raise SubmissionError(f"{bundle / run_name}: not UTF-8 text") from exc
    except MaebenchError as exc:
        raise SubmissionError(str(exc)) from exc

    try:
        dataset = load_dataset(task, data_dir, download=False)
    except MaebenchError as exc:
        raise SubmissionError(
            f"{origin}: cannot verify against our data for {task_name} ({exc}); pass --data-dir"
        ) from exc
    if task.fingerprints is not None and dataset.fingerprints != task.fingerprints:
        raise SubmissionError(
            f"our copy of {task_name} differs from the catalog's fingerprints; cannot verify {origin}"
        )
    if result.task.fingerprints != dataset.fingerprints:
        raise SubmissionError(f"{origin}: field task.fingerprints: computed on different data than ours")
    if (result.task.n_docs, result.task.n_queries) != (len(dataset.corpus), len(dataset.qrels)):
        raise SubmissionError(f"{origin}: field task.n_queries: counts differ from our data")

    _check_run(str(bundle / run_name), run, dataset, "drop_identical_ids" in task.quirks, result.run.depth)
    depth = result.run.depth
    exact_metrics = tuple(m for m in task.evaluation_metrics if Metric.parse(m).cutoff <= depth)
    needed = exact_metrics + ((f"R@{depth}",) if f"R@{depth}" not in exact_metrics else ())
    evaluation = evaluate(dataset.qrels, run, needed, task.relevance_threshold)
    bounds = _check_claims(origin, result, evaluation.per_query, set(dataset.qrels), depth)
    for metric in exact_metrics:
        if not _close(result.metrics[metric], evaluation.aggregates[metric]):
            raise SubmissionError(
                f"{origin}: field metrics.{metric}: claimed {result.metrics[metric]!r}, recomputed "
                f"{evaluation.aggregates[metric]!r}"
            )
    from benchmark.results.schema import with_eval_key

    try:  # the same serialisation the commit does, so --check fails wherever the commit would
        json_bytes = dump_result(with_eval_key(result))
    except (ValueError, RecursionError, TypeError) as exc:
        raise SubmissionError(f"{origin}: cannot be stored ({type(exc).__name__}: {exc})") from exc
    return CheckedResult(result, run_bytes, bounds, json_bytes=json_bytes)


# --------------------------------------------------------------------------- the whole bundle


def validate_bundle(
    bundle: Path,
    results_dir: Path,
    models_dir: Path,
    data_dir: Path | None = None,
    replace: bool = False,
    limits: Limits | None = None,
) -> Submission:
    """Every check, no writes. Raises SubmissionError (one line) at the first problem."""
    limits = limits or Limits()
    bundle = Path(bundle)
    files = _list_bundle(bundle, limits)
    card, card_text = _load_card(bundle, files, limits)
    if card.name in RESERVED_DIRS:
        raise SubmissionError(f"{bundle}: field name: '{card.name}' is a reserved folder of results/")
    results_json = sorted(n for n in files if n.endswith(".json"))
    if not results_json:
        raise SubmissionError(f"{bundle}: no result files (<task>.json)")
    expected = {n for n in files if n.endswith((".yaml", ".yml"))}
    expected |= set(results_json) | {n.removesuffix(".json") + ".run.gz" for n in results_json}
    unknown = sorted(set(files) - expected)
    if unknown:
        raise SubmissionError(f"{bundle / unknown[0]}: unexpected file in the bundle")
    for name in results_json:
        if not NAME_RE.fullmatch(name.removesuffix(".json")):
            raise SubmissionError(f"{bundle / name}: invalid task name")

    card_path = models_dir / f"{card.name}.yaml"
    card_is_new, card_replaces = True, False
    if card_path.exists():
        from benchmark.catalog.registry import load_card

        try:
            existing = load_card(card_path)
        except MaebenchError:
            existing = None
        if existing == card:
            card_is_new = False
        elif not replace:
            raise SubmissionError(
                f"{card_path} exists with different content; pass --replace to overwrite it"
            )
        else:
            card_replaces = True

    checked = [check_result(bundle, n, files, card, limits, data_dir) for n in results_json]
    for item in checked:
        target = result_path(results_dir, card.name, item.result.task.name)
        item.existed = target.exists()
        if target.exists() and _identical_stored(target, item):
            item.already_stored = True
            continue
        if target.exists():
            if not replace:
                raise SubmissionError(
                    f"{target} already exists; pass --replace to overwrite it"
                )
            from benchmark.results.store import read_result

            try:
                item.previous = read_result(target)
            except MaebenchError:
                item.previous = None
    if card_replaces:
        _refuse_stale_results(results_dir, card, {item.result.task.name for item in checked})
    sub = Submission(card, card_text, card_is_new, card_replaces, checked)
    sub.warnings = [*_leaderboard_warnings(sub), *duplicate_warnings(sub, results_dir, models_dir)]
    return sub


def _leaderboard_warnings(sub: Submission) -> list[str]:
    """A bundle whose tasks are all outside the leaderboard (the embedded smoke test `tiny`, a
    CQADupStack forum before its aggregate) is valid but would never appear in its table."""
    from benchmark.comparison.compare import task_kind

    kinds = {item.result.task.name: task_kind(item.result.task.name) for item in sub.results}
    if any(kind == "benchmark" for kind in kinds.values()):
        return []
    why = ", ".join(f"{t} ({'embedded smoke test' if k == 'embedded' else 'part of an aggregate'})"
                    for t, k in sorted(kinds.items()))
    return [f"not a leaderboard submission: every task is outside the leaderboard ({why}); "
            f"{sub.model} would get a model page but never a row in the table; add a "
            "benchmark task (e.g. `maebench run --model "
            f"{sub.model} --task scifact`, then bundle again)"]


def duplicate_warnings(sub: Submission, results_dir: Path, models_dir: Path) -> list[str]:
    """Another card with the same weights (the same pinned sha256 or hub commit, or local weights
    whose sha256 is the bundle's), or another model's stored run identical to the bundle's: the
    same model under a second name, which a reviewer should not merge as a new row."""
    from benchmark.catalog.registry import load_cards

    config = sub.card.retriever
    revision = getattr(config, "revision", None)
    checkpoint = getattr(config, "checkpoint", None)
    digest = revision[len("sha256:"):] if revision and revision.startswith("sha256:") else None
    out: list[str] = []
    try:
        cards, _ = load_cards(models_dir) if models_dir.is_dir() else ({}, [])
    except MaebenchError:
        cards = {}
    for name, other in sorted(cards.items()):
        if name == sub.model or other.retriever.kind != "dense":
            continue
        theirs = other.retriever
        same = revision is not None and theirs.revision == revision and (
            digest is not None or theirs.checkpoint == checkpoint)
        if not same and digest is not None:
            same = _local_weights_sha256(theirs) == digest
        if same:
            out.append(f"weights identical to those of the card {name} ({theirs.checkpoint}); "
                       "the same model must not enter the leaderboard twice")
    for item in sub.results:
        twin = _identical_run(item, results_dir, sub.model)
        if twin is not None:
            out.append(f"{item.result.task.name}: the run is identical to {twin}'s stored run "
                       "(the same model under another name?)")
    return out


def _local_weights_sha256(config) -> str | None:
    """sha256 of a card's weights when they are on this machine (a package, MAEBENCH_WEIGHTS_DIR,
    the maebench home); None for hub-only weights (nothing is downloaded to check)."""
    from benchmark.catalog.weights import resolve_checkpoint, weights_sha256

    if not getattr(config, "checkpoint", None):
        return None
    try:
        source, origin = resolve_checkpoint(config.checkpoint, config.local_package, None)
        return None if origin == "hub" else weights_sha256(Path(source))
    except (MaebenchError, OSError):
        return None


def _identical_run(item: CheckedResult, results_dir: Path, model: str) -> str | None:
    if item.run_bytes is None:
        return None
    for other, path in stored_runs(results_dir, item.result.task.name).items():
        if other == model:
            continue
        try:
            if path.stat().st_size == len(item.run_bytes) and path.read_bytes() == item.run_bytes:
                return other
        except OSError:
            continue
    return None


def _identical_stored(target: Path, item: CheckedResult) -> bool:
    """The stored result and run file are exactly the bundle's (e.g. `submit --check` in the
    clone that produced them): accepted as they are, nothing to replace."""
    from benchmark.results.store import read_result, run_path

    try:
        stored = read_result(target)
        run_bytes = run_path(target).read_bytes() if item.run_bytes is not None else None
    except (MaebenchError, OSError):
        return False
    return stored == item.result and run_bytes == item.run_bytes


def _refuse_stale_results(results_dir: Path, card: ModelCard, resubmitted: set[str]) -> None:
    """A replaced card must not leave results of its model computed with the old configuration:
    the leaderboard would average two different models under one name."""
    from benchmark.results.identity import same_config
    from benchmark.results.store import read_result

    config = ModelInfo.from_card(card).config
    for task in stored_tasks(results_dir, card.name):
        if task in resubmitted:
            continue
        path = result_path(results_dir, card.name, task)
        try:
            stale = not same_config(read_result(path).model.config, config)
        except MaebenchError:
            stale = True
        if stale:
            raise SubmissionError(
                f"{path} was computed with the old card of {card.name}; resubmit that task in "
                "the bundle (or remove the result) before replacing the card"
            )


def commit(sub: Submission, results_dir: Path, models_dir: Path) -> list[Path]:
    """Everything in one ResultStore transaction (results/ and the card in models/): a crash
    or a kill at any point leaves the old or the new state, never part of the bundle."""
    from benchmark.results.store import ResultStore

    store = ResultStore(results_dir, models_dir)
    files: list[tuple[Path, bytes]] = []
    for item in sub.results:
        if item.already_stored:
            continue
        final = result_path(results_dir, sub.model, item.result.task.name)
        if item.run_bytes is not None:
            files.append((run_path(final), item.run_bytes))
    for item in sub.results:
        if not item.already_stored:
            final = result_path(results_dir, sub.model, item.result.task.name)
            files.append((final, item.json_bytes or dump_result(item.result)))
    if sub.card_is_new or sub.card_replaces:
        files.append((models_dir / f"{sub.model}.yaml", sub.card_text.encode("utf-8")))
    if not files:
        return []
    # a result that appeared after validation (a concurrent writer) is refused, not replaced
    must_not_exist = [
        result_path(results_dir, sub.model, item.result.task.name)
        for item in sub.results if not item.existed
    ]
    return store.commit(files, must_not_exist=must_not_exist)


def submit(
    bundle: Path,
    results_dir: Path,
    models_dir: Path,
    data_dir: Path | None = None,
    replace: bool = False,
    check_only: bool = False,
    limits: Limits | None = None,
) -> tuple[Submission, list[Path]]:
    sub = validate_bundle(bundle, results_dir, models_dir, data_dir, replace, limits)
    if check_only:
        return sub, []
    return sub, commit(sub, results_dir, models_dir)


# --------------------------------------------------------------------------- reporting


def aggregate_diff(old: Result, new: Result) -> list[tuple[str, float, float, float]]:
    """(metric, old, new, new - old) for every metric of the new result."""
    return [
        (m, old.metrics.get(m, math.nan), v, v - old.metrics.get(m, math.nan))
        for m, v in sorted(new.metrics.items())
    ]


def leaderboard_rows(
    sub: Submission, results_dir: Path, metric: str = "nDCG@10"
) -> list[tuple[str, int, str, float, float, float | None]]:
    """(task, rank, model, score, delta vs the new model, paired p-value) on each submitted task.

    The new results take the place of any stored result of the same model; other models count
    only when evaluated on the same data (fingerprints) and queries."""
    from benchmark.results.store import iter_results

    try:
        from benchmark.evaluation.significance import paired_test
    except ImportError:  # the statistics module is optional here
        paired_test = None

    from benchmark.comparison.compare import competition_ranks
    from benchmark.results.identity import EvalKey

    stored = [r for _, r in iter_results(results_dir)]
    rows = []
    for item in sub.results:
        new = item.result
        key = EvalKey.of(new)
        peers = [
            r for r in stored
            if r.task.name == new.task.name and r.model.name != new.model.name
            and metric in r.per_query and EvalKey.of(r).comparable(key)
        ]
        ranked = sorted([new, *peers], key=lambda r: (-r.metrics[metric], r.model.name))
        # tied scores share the best rank, as in `maebench compare` and on the site
        ranks = competition_ranks([r.metrics[metric] for r in ranked])
        for r, rank in zip(ranked, ranks, strict=True):
            p_value = None
            if paired_test is not None and r is not new:
                qids = sorted(new.per_query[metric])
                p_value = paired_test(
                    [new.per_query[metric][q] for q in qids],
                    [r.per_query[metric][q] for q in qids],
                ).p_value
            delta = new.metrics[metric] - r.metrics[metric]
            rows.append((new.task.name, rank, r.model.name, r.metrics[metric], delta, p_value))
    return rows


def summary_markdown(sub: Submission, results_dir: Path, checked_only: bool = True,
                     metric: str = "nDCG@10") -> str:
    """The check as a reviewer reads it on a pull request (a CI job summary / artefact): what was
    verified, every warning, the drift of a re-submitted model against its stored numbers, and a
    table of the submitted model against the models already on the leaderboard for each task
    (tied scores share a rank). Deterministic: the same bundle and results give the same text."""
    def cell(text: object) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    card = sub.card.retriever
    state = ("replaces the card of that name" if sub.card_replaces else
             "new" if sub.card_is_new else "identical to the stored card")
    lines = [f"## maebench submit{' --check' if checked_only else ''}: {cell(sub.model)}: valid", ""]
    revision = getattr(card, "revision", None)
    checkpoint = getattr(card, "checkpoint", None)
    lines.append(f"Card `models/{sub.model}.yaml` ({state}); kind {card.kind}"
                 + (f", checkpoint `{checkpoint}` at `{revision}`" if checkpoint else "") + ".")
    lines.append("Every claimed number was recomputed from the bundle's run files against this "
                 "repository's qrels; dataset fingerprints, split, quirks and queries match the "
                 "catalog.")
    lines += ["", "| task | " + metric + " ×100 | checked |", "|---|---|---|"]
    for item in sub.results:
        notes = ["recomputed"]
        if item.bounds_only:
            notes.append(f"{', '.join(item.bounds_only)} bounds only (top-{item.result.run.depth} run)")
        if item.already_stored:
            notes.append("identical to the stored result")
        value = item.result.metrics.get(metric)
        lines.append(f"| {cell(item.result.task.name)} | "
                     f"{'' if value is None else f'{value * 100:.2f}'} | {cell('; '.join(notes))} |")
    lines += ["", "### Warnings", ""]
    lines += [f"- WARNING {cell(w)}" for w in sub.warnings] or ["- none"]
    drift = [(item.result.task.name, m, old, new, delta) for item in sub.results
             if item.previous is not None for m, old, new, delta in aggregate_diff(item.previous,
                                                                                   item.result)]
    lines += ["", "### Drift against the stored results", ""]
    if drift:
        lines += ["| task | metric | stored | submitted | Δ |", "|---|---|---|---|---|"]
        lines += [f"| {cell(t)} | {cell(m)} | {old:.4f} | {new:.4f} | {delta:+.4f} |"
                  for t, m, old, new, delta in drift]
    else:
        lines.append("- none: no task of this model is stored yet, or the stored results are "
                     "identical")
    lines += ["", f"### Against the models on the leaderboard ({metric} ×100; Δ = submitted minus "
              "the row; p = paired randomization test, uncorrected; tied scores share a rank)", "",
              "| task | # | model | " + metric + " | Δ | p |", "|---|---|---|---|---|---|"]
    for task, rank, model, score, delta, p_value in leaderboard_rows(sub, results_dir, metric):
        name = f"**{cell(model)}** (submitted)" if model == sub.model else cell(model)
        lines.append(f"| {cell(task)} | {rank} | {name} | {score * 100:.2f} | "
                     f"{'' if model == sub.model else f'{delta * 100:+.2f}'} | "
                     f"{'' if p_value is None else f'{p_value:.4f}'} |")
    return "\n".join(lines) + "\n"


def failure_markdown(bundle: Path, reason: str) -> str:
    """The job summary of a rejected bundle: the one-line reason, nothing else to read."""
    text = reason.replace("\n", " ")
    return (f"## maebench submit --check: {bundle.name}: rejected\n\n"
            f"```\n{text}\n```\n\nFix the bundle (`maebench bundle` writes a valid one) and push "
            "again.\n")

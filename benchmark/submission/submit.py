"""`maebench submit`: a bundle (model card + result JSONs + run files) validated, then added to
results/ all or nothing.

The bundle's files are read as untrusted input (benchmark.submission.reading) and each result
is checked against our data, its numbers recomputed (benchmark.submission.checks); here the
bundle as a whole is checked against what is stored (a card replaced, results it would leave
stale, the same model under another name). Nothing in results/ or models/ changes until the
whole bundle has been accepted; then all files are staged inside results/ (and models/) and
renamed into place, and a failure half way restores what was there. What a reviewer reads of
it is benchmark.submission.review.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from benchmark.catalog.registry import ModelCard
from benchmark.core.errors import MaebenchError
from benchmark.results.result_store import (
    RESERVED_DIRS,
    dump_result,
    result_path,
    run_path,
    stored_runs,
    stored_tasks,
)
from benchmark.results.schema import NAME_RE, ModelInfo
from benchmark.submission.checks import CheckedResult, check_result
from benchmark.submission.reading import Limits, SubmissionError, list_bundle, read_bundle_card


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
    files = list_bundle(bundle, limits)
    card, card_text = read_bundle_card(bundle, files, limits)
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
            from benchmark.results.result_store import read_result

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
    from benchmark.results.result_store import read_result, run_path

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
    from benchmark.results.result_store import read_result

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
    from benchmark.results.result_store import ResultStore

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

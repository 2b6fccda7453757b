"""What a study measures before its fine-tuning cells: each backbone's zero-shot score and
collapse diagnostics, and the learning-rate pilot that fixes the fine-tuning recipe.

Both write into the study's results folder, atomically, and are skipped when present:
  results/studies/<id>/<backbone>/<task>.json   zero-shot result ([CLS], dot, no fine-tuning)
  results/studies/<id>/diagnostics.json          collapse diagnostics per backbone
  results/studies/<id>/pilot.json                the pilot's scores and the chosen learning rate

The pilot never sees the evaluation split: it trains on the task's train queries minus a seeded
held-out share and scores on those held-out train queries, so the recipe is fixed before any
test number exists (the audit's section 3.4).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmark.studies.spec import (
    StudyError,
    StudyOptions,
    StudySpec,
    backbones,
    evaluate_card,
    study_card,
    study_models_dir,
    study_results_dir,
)

DIAGNOSTIC_DOCS = 200  # documents encoded for the mean pairwise cosine


def _write_json(path: Path, payload: dict) -> None:
    from benchmark.core.files import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (json.dumps(payload, indent=1, sort_keys=True) + "\n").encode("utf-8"))


def _read_pilot_file(study: StudySpec) -> dict[str, Any] | None:
    """The stored pilot record (finished or not), validated (studies.stored): None when there
    is none; a FIFO, a damaged file or a winner that is not a scored candidate is one line
    naming the file, never waited on nor used."""
    from benchmark.studies.stored import StoredStudyFileError, load_pilot, pilot_rates

    path = pilot_path(study)
    try:
        record = load_pilot(path)
    except StoredStudyFileError as exc:
        raise StudyError(f"{exc}; remove it to run the pilot again") from None
    if record is not None and study.finetune.pilot is not None and _same_setting(record, study):
        spec_rates = {float(r) for r in study.finetune.pilot.learning_rates}
        foreign = sorted(pilot_rates(record) - spec_rates)
        if foreign:  # e.g. a winner 0.5 among candidates 0.001 / 0.003: never used
            raise StudyError(
                f"{path}: the pilot record names learning rate(s) {', '.join(f'{r:g}' for r in foreign)} "
                f"that the spec's pilot does not try ({', '.join(f'{r:g}' for r in sorted(spec_rates))}); "
                "remove it to run the pilot again")
    return record


# --------------------------------------------------------------------------- zero-shot


def diagnostics_path(study: StudySpec) -> Path:
    return study_results_dir(study) / "diagnostics.json"


def read_diagnostics(study: StudySpec) -> dict[str, Any]:
    """card -> stored collapse diagnostics, validated (studies.stored): {} when none were
    measured; a FIFO or a damaged file is one line naming it (removing it measures again)."""
    from benchmark.studies.stored import StoredStudyFileError, load_diagnostics

    try:
        return load_diagnostics(diagnostics_path(study))
    except StoredStudyFileError as exc:
        raise StudyError(f"{exc}; remove it to measure the diagnostics again") from None


def zero_shot(study: StudySpec, options: StudyOptions) -> Iterator[str]:
    """Score every backbone a cell fine-tunes, as it is ([CLS], dot), then diagnose collapse."""
    for name in backbones(study):
        card = study_card(study, name)
        for line in evaluate_card(study, card, options):
            yield f"zero-shot: {line}"
        line = record_diagnostics(study, card, options)
        if line:
            yield line


def record_diagnostics(study: StudySpec, card, options: StudyOptions) -> str | None:
    """Diagnose `card` (a backbone, or a fine-tuned cell) once, into diagnostics.json; returns
    a line to print, or None when it was already there."""
    diagnostics = read_diagnostics(study)
    if "centred_dimensions" in diagnostics.get(card.name, {}):
        return None  # measured (an entry from before the centred measures is measured again)
    found = diagnose(study, card, options)
    diagnostics = read_diagnostics(study)  # re-read: nothing else writes it, but stay exact
    diagnostics[card.name] = found
    _write_json(diagnostics_path(study), diagnostics)
    return (f"diagnostics {card.name}: cosine {found['mean_pairwise_cosine']:.3f}, centred dimensions "
            f"{found['centred_dimensions']:.1f}, top-10 overlap {found['top10_overlap']:.3f}, "
            f"{found['reason'] or 'not collapsed'}")


@functools.lru_cache(maxsize=4)
def diagnostic_documents(task_name: str, data_dir: Path | None) -> tuple:
    """The seeded document sample of a task, loaded once per process: a study diagnoses every
    backbone and every fine-tuned cell on the same sample (30 cards would read the corpus 30
    times)."""
    from benchmark.catalog.tasks import get_task
    from benchmark.datasets.beir import load_beir_folder, resolve_folder
    from benchmark.studies.collapse import sample_documents

    task = get_task(task_name)
    docs = list(load_beir_folder(task, resolve_folder(task, data_dir)).corpus.values())
    picked = sample_documents([f"{d.title} {d.text}".strip() for d in docs], DIAGNOSTIC_DOCS, seed=0)
    return tuple(docs[i] for i in picked)


def diagnose(study: StudySpec, card, options: StudyOptions) -> dict[str, Any]:
    """Collapse diagnostics of one backbone on the first evaluation task: raw cosine, centred
    dimensions and spread of the vectors of a seeded document sample, and the top-10 overlap of
    its own run (studies.collapse)."""
    from benchmark.results.result_store import read_result, read_run, result_path
    from benchmark.retrievers import build_retriever
    from benchmark.studies.collapse import collapse_diagnostics

    task_name = study.evaluate[0]
    picked = diagnostic_documents(task_name, options.data_dir)
    retriever = build_retriever(card, options.device)
    vectors = retriever.encode_passages(list(picked))
    path = result_path(study_results_dir(study), card.name, task_name)
    ranked = read_run(path, read_result(path))
    run = {q: dict(pairs) for q, pairs in ranked.items()}
    found = collapse_diagnostics(vectors, run, **study.collapse_thresholds())
    return {**found, "task": task_name, "n_docs": len(picked)}


# --------------------------------------------------------------------------- pilot


def pilot_path(study: StudySpec) -> Path:
    return study_results_dir(study) / "pilot.json"


def pilot_setting(study: StudySpec) -> dict[str, Any]:
    """What a pilot's scores depend on besides the learning rate: the recipe, the spec's other
    fine-tuning overrides, the pilot arm and its held-out share and seed. A stored pilot whose
    setting differs says nothing about this spec's recipe and is redone."""
    pilot = study.finetune.pilot
    return {"recipe": study.finetune.recipe,
            "overrides": {k: str(v) for k, v in sorted(study.finetune.overrides.items())},
            "arm": pilot.arm, "holdout": pilot.holdout, "seed": pilot.seed}


def pilot_card_name(study: StudySpec, lr: float) -> str:
    """One card per candidate rate and setting (a short digest of `pilot_setting`), so a pilot
    redone for another recipe never reuses the old setting's cards."""
    import hashlib

    digest = hashlib.sha256(json.dumps(pilot_setting(study), sort_keys=True).encode()).hexdigest()
    return f"{study.id}-pilot-{digest[:8]}-lr{float(lr):.0e}".replace("+", "")


def _same_setting(stored: dict[str, Any], study: StudySpec) -> bool:
    # a record from before settings were stored is taken as it is (nothing to compare)
    return stored.get("setting", pilot_setting(study)) == pilot_setting(study)


def read_pilot(study: StudySpec) -> dict[str, Any] | None:
    """The finished pilot of this spec's setting, or None."""
    if study.finetune.pilot is None:
        return None
    pilot = _read_pilot_file(study)
    if not pilot or pilot.get("chosen_lr") is None or not _same_setting(pilot, study):
        return None
    return pilot


def held_out_queries(query_ids: list[str], share: float, seed: int) -> frozenset[str]:
    """A seeded share (rounded up) of the train queries, the same whatever order they come in."""
    import math

    import numpy as np

    ordered = sorted(query_ids)
    order = np.random.default_rng([seed, 17]).permutation(len(ordered))
    count = max(1, math.ceil(share * len(ordered)))
    return frozenset(ordered[i] for i in order[:count])


def run_pilot(study: StudySpec, options: StudyOptions) -> Iterator[str]:
    """Fine-tune the pilot arm's backbone once per candidate learning rate on the train split
    minus the held-out queries, score each on the held-out queries, record the winner."""
    if read_pilot(study) is not None:
        return
    from benchmark.catalog.tasks import get_task
    from benchmark.studies.spec import Cell
    from benchmark.training.finetune import finetune_card
    from benchmark.training.negatives import load_train_data

    pilot = study.finetune.pilot
    task = get_task(study.finetune.task)
    data = load_train_data(task, options.data_dir)
    held = held_out_queries(data.query_ids, pilot.holdout, pilot.seed)
    arm = next(a for a in study.arms if a.name == pilot.arm)
    backbone = study_card(study, Cell(arm, study.seeds[0], study).backbone)
    cards = study_models_dir(study)
    state = _read_pilot_file(study) or {}
    stale = bool(state) and not _same_setting(state, study)
    if stale:
        yield "pilot: the stored pilot ran another recipe or setting; running it again"
    scores: dict[str, float] = {} if stale else dict(state.get("scores") or {})
    base = {k: str(v) for k, v in study.finetune.overrides.items()}
    for lr in pilot.learning_rates:
        key = repr(float(lr))
        if key in scores:
            continue
        name = pilot_card_name(study, lr)
        if not (cards / f"{name}.yaml").is_file():
            finetune_card(backbone, task.name, study.finetune.recipe, seed=pilot.seed, name=name,
                          overrides={**base, "lr": str(lr)}, data_dir=options.data_dir,
                          device=options.device, models_dir=cards, progress=False, held_out=held)
        scores[key] = score_on_queries(study_card(study, name), data, held, study.metric, options)
        _write_json(pilot_path(study), {**_pilot_record(study, held, data), "scores": scores})
        yield f"pilot lr {lr:g}: {study.metric} {scores[key]:.4f} on {len(held)} held-out train queries"
    # the best held-out score; a tie goes to the smaller rate (the gentler update)
    chosen = min(scores, key=lambda k: (-scores[k], float(k)))
    _write_json(pilot_path(study), {**_pilot_record(study, held, data), "scores": scores,
                                    "chosen_lr": float(chosen)})
    yield f"pilot: learning rate {float(chosen):g} chosen (held-out train queries only)"


def _pilot_record(study: StudySpec, held: frozenset[str], data) -> dict[str, Any]:
    import hashlib

    pilot = study.finetune.pilot
    return {
        "arm": pilot.arm, "task": study.finetune.task, "split": "train", "metric": study.metric,
        "holdout_share": pilot.holdout, "seed": pilot.seed, "n_held_out": len(held),
        "n_train": len(data.positives) - len(held),
        "held_out_sha256": hashlib.sha256("\n".join(sorted(held)).encode()).hexdigest(),
        "learning_rates": list(pilot.learning_rates), "setting": pilot_setting(study),
        "method": ("each candidate learning rate fine-tunes the pilot arm's backbone with the study's "
                   "recipe on the train queries minus a seeded held-out share; the held-out train "
                   "queries are retrieved over the full corpus and scored; the best score wins, "
                   "a tie goes to the smaller rate; the test split is never read"),
    }


def score_on_queries(card, data, queries: frozenset[str], metric: str, options: StudyOptions) -> float:
    """`metric` of `card` on some train queries of `data`, retrieved over the full corpus."""
    from benchmark.core.timing import PhaseTimer
    from benchmark.datasets.beir import Dataset
    from benchmark.evaluation.metrics import canonicalize, evaluate
    from benchmark.retrievers import build_retriever

    dataset = data.dataset
    picked = sorted(q for q in queries if q in dataset.queries)
    view = Dataset(dataset.task, dataset.path, dataset.corpus, {q: dataset.queries[q] for q in picked},
                   {q: dataset.qrels[q] for q in picked}, dataset.fingerprints)
    retriever = build_retriever(card, options.device)
    ranked = canonicalize(retriever.retrieve(view, 100, PhaseTimer()), 100)
    result = evaluate(view.qrels, ranked, (metric,), data.task.relevance_threshold)
    return float(result.aggregates[metric])


def finetune_overrides(study: StudySpec) -> dict[str, str]:
    """The spec's fine-tuning overrides plus the learning rate its pilot chose (every cell's and
    the fine-tuning gate's)."""
    from benchmark.studies.spec import StudyError

    overrides = {k: str(v) for k, v in study.finetune.overrides.items()}
    if study.finetune.pilot is not None:
        pilot = read_pilot(study)
        if pilot is None:
            raise StudyError(f"study '{study.id}': its learning-rate pilot has not run")
        overrides["lr"] = str(pilot["chosen_lr"])
    return overrides

"""Calibration before spending (`maebench study <spec> --calibrate`).

scratch-mae spent its budget at rates that moved nothing (stage 0 ended 0.47 nats below word
frequencies, no arm's loss moved, fine-tuning stayed near chance). Calibration runs short probes
on train and held-out data only (never a test number) and records, in
results/studies/<id>/calibration.json, what the design needs:
  - stage 0: each candidate rate for `calibrate.stage0_tokens` real tokens, its held-out MLM loss
    at fixed steps against the gate's threshold, and the token budget a log-linear fit of that
    curve projects for passing the gate;
  - arms: each bottleneck objective continued from the best stage-0 probe at each candidate rate,
    the fall of its own loss term on held-out spans (the arm gate's measure);
  - fine-tuning: the study's recipe on the best stage-0 probe at each candidate rate, its final
    loss against chance and its score against BM25 on validation train queries (the fine-tuning
    gate's measures).
Each probe is its own card (models/studies/<id>/), skipped when done, so a killed calibration
resumes; the record is rewritten after every probe.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from benchmark.studies.calibration_record import (
    best_stage0,
    calibration_path,
    most_hopeful_projection,
    projected_tokens,
    read_record,
    write_record,
)
from benchmark.studies.spec import (
    StudyOptions,
    StudySpec,
    init_card_name,
    study_card,
    study_models_dir,
)


def _rate(lr: float) -> str:
    return f"lr{float(lr):.0e}".replace("+", "")


def _log(name: str) -> dict[str, Any]:
    from benchmark.core.files import read_regular_text
    from benchmark.core.paths import checkpoints_dir

    for file in ("pretrain_log.json", "finetune_log.json"):
        path = checkpoints_dir() / name / file
        if path.is_file():
            return json.loads(read_regular_text(path, 1 << 26, "a training log"))
    return {}


def _pretrain_probe(study: StudySpec, init, name: str, objective: str, corpus: str, tokens: int,
                    overrides: dict[str, Any], options: StudyOptions) -> None:
    from benchmark.training.pretrain import PretrainOptions, pretrain_card

    if (study_models_dir(study) / f"{name}.yaml").is_file():
        return
    pretrain_card(init, PretrainOptions(
        objective=objective, corpus=corpus, budget=f"{tokens} tokens", name=name,
        seed=study.stage0.seed if study.stage0 else 0,
        overrides={k: str(v) for k, v in overrides.items()}, data_dir=options.data_dir,
        device=options.device, resume=True, models_dir=study_models_dir(study),
        holdout=study.gates.heldout, evaluations=study.calibrate.evaluations))


def calibrate(study: StudySpec, options: StudyOptions, echo=print) -> Path:
    """Run every missing probe, then write the record with the choices it supports."""
    from benchmark.catalog.registry import load_card
    from benchmark.studies import gates
    from benchmark.studies.runner import keep_curve, prepare_backbone_only

    began = time.process_time()
    prepare_backbone_only(study, options, echo)
    spec = study.calibrate
    record = read_record(study)
    record.update(study=study.id, method=__doc__.split("\n\n")[1].strip())
    cards = study_models_dir(study)
    gates._DATA_DIR[0] = options.data_dir

    # -- stage 0 ------------------------------------------------------------------------------
    spec0 = study.stage0
    if spec0 is None:  # a study that starts from an init card: the arms continue it directly
        record["stage0_probe"] = init_card_name(study)
        return _after_stage0(study, options, echo, record, init_card_name(study), began)
    corpus = spec0.corpus or (study.backbone.corpus if study.backbone else study.corpus)
    entropy = gates.stage0_entropy(study, heldout=True)
    threshold = None if entropy is None else entropy["nats"] - study.gates.stage0_below_unigram
    stage0 = record.setdefault("stage0", {})
    probes = [(f"{study.id}-cal-stage0-{_rate(lr)}", spec.stage0_tokens, lr, {}) for lr in
              spec.stage0_learning_rates]
    probes += [(f"{study.id}-cal-stage0-{extra.tag}-{_rate(lr)}", extra.tokens, lr, dict(extra.overrides))
               for extra in spec.stage0_probes for lr in extra.learning_rates]
    for name, tokens, lr, extra_overrides in probes:
        if name in stage0:
            continue
        overrides = {**spec0.overrides, **extra_overrides, "learning_rate": lr}
        _pretrain_probe(study, study_card(study, init_card_name(study)), name, spec0.objective, corpus,
                        tokens, overrides, options)
        keep_curve(study, name)
        card = load_card(cards / f"{name}.yaml").pretraining
        log = _log(name)
        per_step = card.tokens_seen / max(1, card.steps)
        curve = [(round(e["step"] * per_step), e["terms"]["mlm"]) for e in log.get("heldout") or []]
        final = (card.heldout_end or {}).get("mlm")
        stage0[name] = {
            "lr": lr, "overrides": {k: v for k, v in overrides.items() if k != "learning_rate"},
            "tokens": card.tokens_seen, "steps": card.steps, "cpu_s": card.cpu_time_s,
            "heldout_mlm": curve, "final_heldout_mlm": final, "threshold": threshold,
            "unigram_entropy": None if entropy is None else entropy["nats"],
            "passes": None if threshold is None or final is None else final <= threshold,
            "projected_tokens_to_pass": None if threshold is None else projected_tokens(curve, threshold)}
        write_record(study, record)
        probe = name.removeprefix(study.id + "-cal-stage0-")
        echo(f"calibrate stage 0 {probe}: held-out MLM {final:.3f} after {card.tokens_seen:,} tokens "
             f"(gate needs <= {threshold if threshold is None else round(threshold, 3)})")
    best0 = best_stage0(stage0)
    record["chosen_stage0_lr"] = stage0[best0]["lr"]
    record["stage0_probe"] = best0
    projection = record["stage0_projection"] = most_hopeful_projection(study, stage0, entropy)
    write_record(study, record)
    if projection and projection["within_budget"] is False and not options.continue_past_gates:
        # as a failed gate stops the study: no arm or fine-tuning probe is spent on a design whose
        # stage 0 cannot pass (issue 25: "stop there and report that with the calibration's numbers")
        echo(f"calibration stops: stage 0 projects {projection['projected_cpu_hours']} CPU-hours to its "
             f"gate, beyond the {projection['cpu_hours_budget']:g} declared (--continue-past-gates "
             "probes the arms and fine-tuning anyway)")
        record["stopped"] = "stage 0 projected beyond calibrate.stage0_cpu_hours"
        write_record(study, record)
        return calibration_path(study)
    record.pop("stopped", None)
    return _after_stage0(study, options, echo, record, best0, began)


def _after_stage0(study: StudySpec, options: StudyOptions, echo, record: dict[str, Any], best0: str,
                  began: float) -> Path:
    from benchmark.catalog.registry import load_card
    from benchmark.studies import gates
    from benchmark.studies.runner import keep_curve

    spec = study.calibrate
    cards = study_models_dir(study)
    # probes after stage 0 are named after the stage-0 probe they continue, unless it is one of
    # the first round's (their names predate the further probes and stay as committed)
    tag = best0.removeprefix(f"{study.id}-cal-stage0-")
    on = "" if tag.startswith("lr") else f"-on-{tag}"
    first_round = best_stage0(record.get("stage0", {}), untagged_of=study.id) or best0

    def continues(entry: dict[str, Any]) -> bool:
        return entry.get("from", first_round) == best0

    # -- arms ---------------------------------------------------------------------------------
    arms = record.setdefault("arms", {})
    for arm in study.arms:
        if arm.objective is None:
            continue
        term = "mlm" if arm.objective in gates.CONTROL_OBJECTIVES else gates.bottleneck_term(arm.objective)
        for lr in spec.arm_learning_rates:
            name = f"{study.id}-cal-{arm.name}-{_rate(lr)}{on}"
            if name in arms:
                continue
            _pretrain_probe(study, study_card(study, best0), name, arm.objective, study.corpus,
                            spec.arm_tokens,
                            {**study.pretrain_overrides, **arm.overrides, "learning_rate": lr}, options)
            keep_curve(study, name)
            card = load_card(cards / f"{name}.yaml").pretraining
            start, end = card.heldout_start or {}, card.heldout_end or {}
            fall = (start[term] - end[term]) if term in start and term in end else None
            arms[name] = {"arm": arm.name, "objective": arm.objective, "lr": lr, "term": term,
                          "from": best0,
                          "start": start.get(term), "end": end.get(term), "fall": fall,
                          "terms_start": start, "terms_end": end, "tokens": card.tokens_seen,
                          "cpu_s": card.cpu_time_s,
                          "passes": None if fall is None or arm.objective in gates.CONTROL_OBJECTIVES
                          else fall >= study.gates.arm_drop}
            write_record(study, record)
            echo(f"calibrate arm {arm.name} lr {lr:g}: {term} {start.get(term)} -> {end.get(term)}")
    # one rate for every arm (equal terms): the one whose smallest bottleneck fall is largest
    by_lr: dict[float, list[float]] = {}
    for entry in arms.values():
        bottleneck = entry["objective"] not in gates.CONTROL_OBJECTIVES
        if continues(entry) and bottleneck and entry["fall"] is not None:
            by_lr.setdefault(entry["lr"], []).append(entry["fall"])
    if by_lr:
        record["chosen_arm_lr"] = max(by_lr, key=lambda lr: min(by_lr[lr]))
        record["arm_lr_worst_fall"] = {str(k): min(v) for k, v in by_lr.items()}

    # -- fine-tuning --------------------------------------------------------------------------
    finetune = record.setdefault("finetune", {})
    for lr in spec.finetune_learning_rates:
        name = f"{study.id}-cal-ft-{_rate(lr)}{on}"
        if name in finetune:
            continue
        finetune[name] = {**_finetune_probe(study, best0, name, lr, options), "from": best0}
        keep_curve(study, name)
        write_record(study, record)
        echo(f"calibrate fine-tuning lr {lr:g}: {finetune[name]}")
    record["cpu_s_this_run"] = round(time.process_time() - began, 1)
    record["cpu_s_total"] = round(sum(float(e.get("cpu_s") or 0) for part in ("stage0", "arms", "finetune")
                                      for e in record.get(part, {}).values()), 1)
    write_record(study, record)
    return calibration_path(study)


def _finetune_probe(study: StudySpec, backbone_name: str, name: str, lr: float,
                    options: StudyOptions) -> dict[str, Any]:
    from benchmark.catalog.registry import get_card, load_card
    from benchmark.studies import gates
    from benchmark.studies.pilot import score_on_queries
    from benchmark.training.finetune import finetune_card

    views = {}
    for task in study.evaluate:
        try:
            views[task] = gates.validation_queries(study, task, options.data_dir)
        except Exception:  # noqa: BLE001 - a task without train queries has no validation set
            continue
    held = views[study.finetune.task][1] if study.finetune.task in views else None
    cards = study_models_dir(study)
    began = time.process_time()
    if not (cards / f"{name}.yaml").is_file():
        overrides = {**{k: str(v) for k, v in study.finetune.overrides.items()}, "lr": str(lr)}
        finetune_card(study_card(study, backbone_name), study.finetune.task, study.finetune.recipe,
                      seed=study.seeds[0], name=name, overrides=overrides, data_dir=options.data_dir,
                      device=options.device, models_dir=cards, progress=False, held_out=held)
    tuned = load_card(cards / f"{name}.yaml")
    record = tuned.finetuning.record if tuned.finetuning else None
    if record is None:
        return {"lr": lr, "final_loss": None, "note": f"{name} has no fine-tuning record"}
    chance = gates._chance(record.resolved_recipe)
    bm25 = gates._bm25_card(get_card)
    scores = {}
    for task, (data, queries) in views.items():
        scores[task] = {"probe": score_on_queries(tuned, data, queries, study.metric, options),
                        "bm25": score_on_queries(bm25, data, queries, study.metric, options),
                        "queries": len(queries)}
    shares = [s["probe"] / s["bm25"] for s in scores.values() if s["bm25"]]
    return {"lr": lr, "final_loss": record.final_loss, "chance": chance,
            "loss_share_of_chance": None if not chance or record.final_loss is None
            else record.final_loss / chance, "validation": scores,
            "bm25_share": min(shares) if shares else None, "steps": record.steps,
            "cpu_s": round(time.process_time() - began, 1)}



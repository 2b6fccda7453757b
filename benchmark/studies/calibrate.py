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
import math
import time
from pathlib import Path
from typing import Any

from benchmark.studies.spec import (
    StudyOptions,
    StudySpec,
    init_card_name,
    study_card,
    study_models_dir,
    study_results_dir,
)


def calibration_path(study: StudySpec) -> Path:
    return study_results_dir(study) / "calibration.json"


def _rate(lr: float) -> str:
    return f"lr{float(lr):.0e}".replace("+", "")


def _read(study: StudySpec) -> dict[str, Any]:
    from benchmark.studies.stored import read_json_file

    path = calibration_path(study)
    if not (path.exists() or path.is_symlink()):
        return {}
    found = read_json_file(path, "a calibration record (remove it to calibrate again)")
    return found if isinstance(found, dict) else {}


def _write(study: StudySpec, record: dict[str, Any]) -> None:
    from benchmark.core.files import atomic_write

    path = calibration_path(study)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode("utf-8"))


def _log(name: str) -> dict[str, Any]:
    from benchmark.core.files import read_regular_text
    from benchmark.core.paths import checkpoints_dir

    for file in ("pretrain_log.json", "finetune_log.json"):
        path = checkpoints_dir() / name / file
        if path.is_file():
            return json.loads(read_regular_text(path, 1 << 26, "a training log"))
    return {}


def projected_tokens(points: list[tuple[float, float]], threshold: float) -> float | None:
    """Tokens at which a least-squares fit loss = a + b ln(tokens) over the second half of the
    held-out curve reaches `threshold` (None when the curve does not fall). An extrapolation:
    losses flatten with training, so it is a lower bound on the budget, not a promise."""
    tail = [(t, y) for t, y in points if t > 0][len(points) // 2 - 1:] if len(points) > 2 else points
    tail = [(math.log(t), y) for t, y in tail if t > 0]
    if len(tail) < 2:
        return None
    mx = sum(x for x, _ in tail) / len(tail)
    my = sum(y for _, y in tail) / len(tail)
    sxx = sum((x - mx) ** 2 for x, _ in tail)
    if sxx == 0:
        return None
    b = sum((x - mx) * (y - my) for x, y in tail) / sxx
    if b >= 0:
        return None
    a = my - b * mx
    exponent = (threshold - a) / b
    return float(math.exp(exponent)) if exponent < 700 else float("inf")


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
    record = _read(study)
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
        _write(study, record)
        probe = name.removeprefix(study.id + "-cal-stage0-")
        echo(f"calibrate stage 0 {probe}: held-out MLM {final:.3f} after {card.tokens_seen:,} tokens "
             f"(gate needs <= {threshold if threshold is None else round(threshold, 3)})")
    best0 = _best_stage0(stage0)
    record["chosen_stage0_lr"] = stage0[best0]["lr"]
    record["stage0_probe"] = best0
    projection = record["stage0_projection"] = most_hopeful_projection(study, stage0, entropy)
    _write(study, record)
    if projection and projection["within_budget"] is False and not options.continue_past_gates:
        # as a failed gate stops the study: no arm or fine-tuning probe is spent on a design whose
        # stage 0 cannot pass (issue 25: "stop there and report that with the calibration's numbers")
        echo(f"calibration stops: stage 0 projects {projection['projected_cpu_hours']} CPU-hours to its "
             f"gate, beyond the {projection['cpu_hours_budget']:g} declared (--continue-past-gates "
             "probes the arms and fine-tuning anyway)")
        record["stopped"] = "stage 0 projected beyond calibrate.stage0_cpu_hours"
        _write(study, record)
        return calibration_path(study)
    record.pop("stopped", None)
    return _after_stage0(study, options, echo, record, best0, began)


def stage0_projection(name: str, probe: dict[str, Any], entropy: dict[str, Any] | None,
                      cpu_hours_budget: float) -> dict[str, Any]:
    """What the best stage-0 probe's curve says about the gate: the tokens its log-linear fit
    needs to reach the threshold, what they cost at the probe's own tokens per CPU-second, how
    many passes over the training corpus that is, and whether it fits the declared CPU-hours.
    A log-linear fit of a falling, flattening curve is optimistic (losses flatten faster), and
    passes beyond a few over a small corpus learn less per token, so 'beyond' is firm and
    'within' is a hope that the study's own stage-0 gate then checks."""
    tokens = probe.get("projected_tokens_to_pass")
    speed = probe["tokens"] / probe["cpu_s"] if probe.get("cpu_s") else None
    corpus_tokens = (entropy or {}).get("tokens")
    hours = None if tokens is None or not speed else tokens / speed / 3600
    passed = bool(probe.get("passes"))
    return {
        "probe": name, "final_heldout_mlm": probe.get("final_heldout_mlm"),
        "threshold": probe.get("threshold"), "probe_tokens": probe["tokens"],
        "projected_tokens": tokens, "tokens_per_cpu_s": None if speed is None else round(speed, 1),
        "projected_cpu_hours": None if hours is None else round(hours, 2),
        "corpus_tokens": corpus_tokens,
        "projected_epochs": None if tokens is None or not corpus_tokens else round(tokens / corpus_tokens, 1),
        "cpu_hours_budget": cpu_hours_budget,
        "within_budget": True if passed else (None if hours is None and tokens is None
                                              else hours is not None and hours <= cpu_hours_budget),
    }


def most_hopeful_projection(study: StudySpec, stage0: dict[str, Any],
                            entropy: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The projection of the stage-0 probe that needs the fewest CPU-hours to pass the gate (not
    the one with the lowest loss: a shorter probe at another rate may fall faster), so that
    'beyond the budget' holds for every probe tried."""
    if entropy is None:
        from benchmark.studies import gates

        try:
            entropy = gates.stage0_entropy(study, heldout=True)
        except Exception:  # noqa: BLE001 - no tokenizer or data here: the corpus size stays unknown
            entropy = None
    found = [stage0_projection(name, probe, entropy, study.calibrate.stage0_cpu_hours)
             for name, probe in stage0.items()]
    if not found:
        return None
    return min(found, key=lambda p: (not p["within_budget"] or False, p["projected_cpu_hours"]
                                     if p["projected_cpu_hours"] is not None else float("inf")))


def _best_stage0(stage0: dict[str, Any], untagged_of: str | None = None) -> str | None:
    """The stage-0 probe with the lowest final held-out MLM loss (of the first round's, untagged
    probes only, with `untagged_of`: the one the first round's arm probes continued)."""
    names = [k for k in stage0 if untagged_of is None
             or k.removeprefix(f"{untagged_of}-cal-stage0-").startswith("lr")]
    finals = {k: stage0[k]["final_heldout_mlm"] for k in names}
    return min(names, key=lambda k: finals[k] if finals[k] is not None else float("inf"), default=None)


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
    first_round = _best_stage0(record.get("stage0", {}), untagged_of=study.id) or best0

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
            _write(study, record)
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
        _write(study, record)
        echo(f"calibrate fine-tuning lr {lr:g}: {finetune[name]}")
    record["cpu_s_this_run"] = round(time.process_time() - began, 1)
    record["cpu_s_total"] = round(sum(float(e.get("cpu_s") or 0) for part in ("stage0", "arms", "finetune")
                                      for e in record.get(part, {}).values()), 1)
    _write(study, record)
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


def calibration_summary(study: StudySpec) -> dict[str, Any] | None:
    """The stored calibration as the report and the page show it (None when none has run)."""
    record = _read(study)
    if not record.get("stage0") and not record.get("arms"):
        return None
    stage0 = [{"probe": name, "lr": e.get("lr"), "batch_size": (e.get("overrides") or {}).get("batch_size"),
               "scheduler": (e.get("overrides") or {}).get("scheduler"), "tokens": e.get("tokens"),
               "steps": e.get("steps"), "final_heldout_mlm": e.get("final_heldout_mlm"),
               "threshold": e.get("threshold"), "unigram_entropy": e.get("unigram_entropy")}
              for name, e in sorted((record.get("stage0") or {}).items())]
    first_round = _best_stage0(record.get("stage0") or {}, untagged_of=study.id)
    arms = [{"probe": name, "from": e.get("from", first_round),
             "objective": e.get("objective"), "lr": e.get("lr"), "term": e.get("term"),
             "tokens": e.get("tokens"), "start": e.get("start"), "end": e.get("end"),
             "fall": e.get("fall"), "passes": e.get("passes")}
            for name, e in sorted((record.get("arms") or {}).items())]
    keep = ("lr", "final_loss", "chance", "bm25_share", "steps")
    finetune = [{"probe": name, **{k: e.get(k) for k in keep}}
                for name, e in sorted((record.get("finetune") or {}).items())]
    projection = record.get("stage0_projection")
    if record.get("stage0") and study.stage0 is not None:
        projection = most_hopeful_projection(study, record["stage0"])
    return {"stage0": stage0, "projection": projection, "arms": arms,
            "finetune": finetune, "arm_threshold": study.gates.arm_drop}


def calibration_lines(summary: dict[str, Any]) -> list[str]:
    """The calibration in sentences (CLI and page): each probe with its measure and the gate's
    threshold, then the projection the design's budget rests on."""
    lines = []
    for e in summary.get("stage0") or []:
        if e["final_heldout_mlm"] is None:
            continue
        shape = (f"batch {e['batch_size']}, {e['scheduler']}" if e.get("batch_size")
                 else "the spec's stage-0 recipe")
        lines.append(f"stage 0 probe lr {e['lr']:g} ({shape}): held-out MLM {e['final_heldout_mlm']:.3f} "
                     f"after {e['tokens']:,} tokens in {e['steps']:,} steps (gate: <= {e['threshold']:.3f}, "
                     f"unigram entropy {e['unigram_entropy']:.3f})")
    for e in summary.get("arms") or []:
        if e["fall"] is None:
            continue
        judged = "" if e["passes"] is None else (" passes" if e["passes"] else " fails")
        lines.append(f"arm probe {e['objective']} lr {e['lr']:g} from {e['from']}: {e['term']} "
                     f"{e['start']:.3f} -> {e['end']:.3f} (fell {e['fall']:+.3f} over {e['tokens']:,} "
                     "tokens; "                     f"gate: >= {summary['arm_threshold']}){judged}")
    for e in summary.get("finetune") or []:
        if e.get("final_loss") is not None:
            lines.append(f"fine-tuning probe lr {e['lr']:g}: final loss {e['final_loss']:.3f} against chance "
                         f"{e['chance']:.3f}, {e['bm25_share']:.0%} of BM25 on validation train queries"
                         if e.get("bm25_share") is not None and e.get("chance") else
                         f"fine-tuning probe lr {e['lr']:g}: final loss {e['final_loss']:.3f}")
    p = summary.get("projection")
    if p and p.get("projected_tokens") is not None:
        lines.append(
            f"projection from {p['probe']}: the stage-0 gate needs about {p['projected_tokens']:,.0f} tokens "
            f"({p['projected_epochs']} passes over its {p['corpus_tokens']:,} training tokens), "
            f"{p['projected_cpu_hours']} CPU-hours at the probe's {p['tokens_per_cpu_s']:,} tokens per "
            f"CPU-second, against the {p['cpu_hours_budget']:g} declared: "
            + ("within" if p["within_budget"] else "beyond"))
    return lines

"""Running a study (`maebench study <spec>`): backbones, zero-shot scores, pilot, cells, report.

Order: stage -1 (a backbone built from nothing, when the spec says so), stage 0 (one shared
pre-training), each arm's own pre-training, every backbone's zero-shot score and collapse
diagnostics, the learning-rate pilot, then the cells (fine-tune -> evaluate) seed-major, then
the report. Every step is skipped when its output exists (a card is written only after its
weights, a result only after its run), and an interrupted step resumes from its own staging
folder, so killing the study at any point (kill -9 included) and starting it again redoes at
most the unfinished step.
"""

from __future__ import annotations

from pathlib import Path

from benchmark.studies.claims import claim_weights
from benchmark.studies.pilot import finetune_overrides, record_diagnostics, run_pilot, zero_shot
from benchmark.studies.report import write_report
from benchmark.studies.spec import (
    Cell,
    Scalar,
    StudyError,
    StudyOptions,
    StudySpec,
    _load,
    cells,
    evaluate_card,
    init_card_name,
    stage0_card_name,
    study_card,
    study_models_dir,
)


def _pretrain(study: StudySpec, init, name: str, objective: str, corpus: str, budget: str, seed: int,
              overrides: dict[str, Scalar], options: StudyOptions) -> None:
    from benchmark.training.pretrain import PretrainOptions, pretrain_card

    pretrain_card(init, PretrainOptions(
        objective=objective, corpus=corpus, budget=budget, name=name, seed=seed,
        overrides={k: str(v) for k, v in overrides.items()}, data_dir=options.data_dir,
        device=options.device, resume=True, models_dir=study_models_dir(study),
        holdout=study.gates.heldout if _gated(study) else 0.0,
    ))
    keep_curve(study, name)


CURVE_FILES = ("pretrain_log.json", "finetune_log.json")


def keep_curve(study: StudySpec, name: str) -> None:
    """Copy a trained card's per-step log (losses, terms, learning rates, held-out evaluations)
    from its weights folder, which stays on this machine, into the study's committed results, so
    the page can draw whether training moved."""
    from benchmark.core.files import atomic_write, read_regular_text
    from benchmark.core.paths import checkpoints_dir
    from benchmark.studies.spec import study_results_dir

    for file in CURVE_FILES:
        source = checkpoints_dir() / name / file
        if source.is_file() and not source.is_symlink():
            target = study_results_dir(study) / "curves" / f"{name}.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target, read_regular_text(source, 1 << 26, "a training log").encode("utf-8"))
            return


def _weights_lost(card_path: Path) -> bool:
    """A card of the study whose weights (under the maebench home) are gone: a new machine gets
    the committed cards, not the home folder."""
    from benchmark.catalog.registry import load_card
    from benchmark.core.paths import home_dir

    checkpoint = getattr(load_card(card_path).retriever, "checkpoint", None) or ""  # validated
    return checkpoint.startswith("home:") and not (home_dir() / checkpoint[len("home:"):]).is_dir()


def forget_lost_weights(study: StudySpec, echo=print) -> None:
    """Cards whose weights are gone are dropped while some cell still needs them, so their step
    runs again: a backbone, stage 0 and each arm's pre-training are seeded (the same weights
    come back), and a fine-tuned cell without its result is simply redone."""
    from benchmark.results.result_store import result_path
    from benchmark.studies.spec import study_results_dir

    def finished(name: str) -> bool:
        return all(result_path(study_results_dir(study), name, t).is_file() for t in study.evaluate)

    open_cells = [c for c in cells(study) if not finished(c.finetuned)]
    if not open_cells:
        return
    names = [init_card_name(study)] if study.backbone is not None else []
    names += [n for n in [stage0_card_name(study)] if n]
    names += [c.pretrained for c in open_cells if c.pretrained] + [c.finetuned for c in open_cells]
    for name in dict.fromkeys(names):
        path = study_models_dir(study) / f"{name}.yaml"
        if path.is_file() and _weights_lost(path):
            path.unlink()
            echo(f"{name}: its weights are gone from this machine; redoing that step")


def prepare_backbone_only(study: StudySpec, options: StudyOptions, echo=print) -> None:
    """Stage -1: the backbone built from nothing, when the spec says so (skipped when its card
    exists); calibration starts from it too."""
    cards = study_models_dir(study)
    if study.backbone is not None and not (cards / f"{init_card_name(study)}.yaml").is_file():
        from benchmark.training.backbone import BackboneOptions, new_backbone

        spec = study.backbone
        new_backbone(BackboneOptions(name=init_card_name(study), corpus=spec.corpus, size=spec.size(),
                                     seed=spec.seed, min_frequency=spec.min_frequency,
                                     data_dir=options.data_dir, models_dir=cards, overwrite=True))
        echo(f"backbone {init_card_name(study)}: built")


def prepare_backbones(study: StudySpec, options: StudyOptions, echo=print) -> None:
    """Stage -1 (a backbone from nothing), stage 0 (shared), and each arm's own pre-training
    when the study pre-trains once per arm; each skipped when its card exists."""
    cards = study_models_dir(study)
    prepare_backbone_only(study, options, echo)
    stage0 = stage0_card_name(study)
    if study.stage0 is not None and not (cards / f"{stage0}.yaml").is_file():
        spec0 = study.stage0
        corpus = spec0.corpus or (study.backbone.corpus if study.backbone else study.corpus)
        _pretrain(study, study_card(study, init_card_name(study)), stage0, spec0.objective, corpus,
                  study.stage0_budget, spec0.seed, spec0.overrides, options)
        echo(f"stage 0 {stage0}: pre-trained")
    if stage0 is not None and _gated(study):
        from benchmark.studies.gates import judge_stage0

        check_gate(study, judge_stage0(study), options, echo)
    if study.pretrain_seed is None:
        return  # each cell pre-trains with its own seed (run_cell)
    for arm in study.arms:
        cell = Cell(arm, study.seeds[0], study)
        if cell.pretrained and not (cards / f"{cell.pretrained}.yaml").is_file():
            _pretrain_cell(cell, options)
            echo(f"arm {arm.name}: pre-trained {cell.pretrained}")
    if _gated(study):
        from benchmark.studies.gates import judge_arms

        for gate in judge_arms(study):
            check_gate(study, gate, options, echo)


def _gated(study: StudySpec) -> bool:
    """Gates stop a registered study (one that recorded its design before its first test number);
    a study run before gates existed is judged in its report only."""
    from benchmark.studies.registration import registration_path

    return registration_path(study).is_file()


def check_gate(study: StudySpec, gate: dict, options: StudyOptions, echo=print) -> None:
    """A failed gate stops the study before it spends the next stage's budget (its report says
    uninformative); --continue-past-gates goes on, and the report lists that as a deviation."""
    from benchmark.studies.gates import describe, record_continued

    echo("gate " + describe(gate))
    if gate.get("passed") is not False:
        return
    if options.continue_past_gates:
        record_continued(study, describe(gate))
        echo("gate failed; continuing anyway (--continue-past-gates), recorded as a deviation")
        return
    write_report(study, options.data_dir)
    raise StudyError(f"study '{study.id}' stopped at a failed gate, before spending the next "
                     f"stage's budget: {describe(gate)}; the study is uninformative (its report "
                     "says so); --continue-past-gates goes on anyway, recorded as a deviation")


def _pretrain_cell(cell: Cell, options: StudyOptions) -> None:
    study = cell.study
    init = study_card(study, stage0_card_name(study) or init_card_name(study))
    _pretrain(study, init, cell.pretrained, cell.arm.objective, study.corpus, study.budget,
              cell.pretrain_seed, {**study.pretrain_overrides, **cell.arm.overrides}, options)


def run_cell(cell: Cell, options: StudyOptions) -> list[str]:
    """Run what is missing of one cell; returns what was done (empty: reused)."""
    study = cell.study
    cards = study_models_dir(study)
    done: list[str] = []
    if cell.pretrained and not (cards / f"{cell.pretrained}.yaml").is_file():
        _pretrain_cell(cell, options)
        done.append(f"pretrain {cell.pretrained}")
    if options.only == "pretrain":
        return done
    backbone = study_card(study, cell.backbone)
    if not (cards / f"{cell.finetuned}.yaml").is_file():
        from benchmark.training.finetune import finetune_card

        finetune_card(backbone, study.finetune.task, study.finetune.recipe, seed=cell.seed,
                      name=cell.finetuned, overrides=finetune_overrides(study) or None,
                      data_dir=options.data_dir, device=options.device, models_dir=cards,
                      progress=False)
        keep_curve(study, cell.finetuned)
        done.append(f"finetune {cell.finetuned}")
    card = _load(cell.finetuned, cards)
    done += evaluate_card(study, card, options)
    if record_diagnostics(study, card, options):
        done.append("diagnostics")
    return done


def _register_if_new(study: StudySpec, echo=print) -> None:
    """Record the design before the study's first test number; a study that already has test
    results and no registration ran before registrations existed and is left unregistered."""
    from benchmark.studies.registration import register, registration_path
    from benchmark.studies.spec import study_results_dir

    if registration_path(study).is_file() or any(study_results_dir(study).glob("*/*.json")):
        return
    path, _ = register(study)
    echo(f"registered the design of '{study.id}' in {path} (commit it before the first test number)")


def _lock(study: StudySpec):
    """One runner per study: two would train the same cell into the same staging folder. An
    flock dies with its process, so a kill -9 never leaves a stale lock behind."""
    import fcntl

    from benchmark.core.paths import checkpoints_dir

    checkpoints_dir().mkdir(parents=True, exist_ok=True)
    handle = (checkpoints_dir() / f".study-{study.id}.lock").open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        handle.close()
        raise StudyError(f"study '{study.id}' is already running in another process") from exc
    return handle


def run_study(study: StudySpec, options: StudyOptions, echo=print) -> Path | None:
    """Backbones first (stage -1, stage 0, each arm's pre-training), their zero-shot scores and
    collapse diagnostics, the learning-rate pilot, then every missing cell in order, then the
    report (None when only pre-training was asked)."""
    lock = _lock(study)  # held until this process ends
    try:
        claim_weights(study)  # no other study's weights folder is ever replaced (issue 27)
        _register_if_new(study, echo)
        forget_lost_weights(study, echo)
        prepare_backbones(study, options, echo)
        if options.only != "pretrain":
            # train-only steps first (pilot, the fine-tuning gate), then the first test numbers
            if study.finetune.pilot is not None:
                for line in run_pilot(study, options):
                    echo(line)
            if _gated(study):
                from benchmark.studies.gates import judge_finetune_loss, judge_validation, measure_validation

                for line in measure_validation(study, options):
                    echo(line)
                check_gate(study, judge_finetune_loss(study), options, echo)
                check_gate(study, judge_validation(study), options, echo)
            if study.zero_shot:
                for line in zero_shot(study, options):
                    echo(line)
        for index, cell in enumerate(cells(study)):
            if options.max_cells is not None and index >= options.max_cells:
                break
            done = run_cell(cell, options)
            echo(f"cell {cell.arm.name} seed {cell.seed}: " + (", ".join(done) if done else "reused"))
        if options.only == "pretrain":
            return None
        return write_report(study, options.data_dir)
    finally:
        lock.close()

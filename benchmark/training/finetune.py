"""`maebench finetune`: one fine-tuning protocol (a recipe) applied to any dense backbone card.

backbone card + training data + recipe + seed -> weights under $MAEBENCH_HOME/checkpoints/<name>
(a plain Hugging Face folder, also loadable by sentence-transformers) -> a new card in models/
that `maebench run` evaluates like any other, with `finetuned_from` and a full record. The
training data is a task's train split (queries, qrels, BM25 hard negatives), or, named
`titles:<task>,<task>`, the title -> text pairs of those tasks' corpora with in-batch negatives
only and no query or qrels file read (training.title_pairs; issue 25).

This module decides what a run trains on and records it; the jobs live beside it:
finetune_trainer (model, loss, dataset, the sentence-transformers trainer, one stage),
finetune_log (the per-step curve and held-out evaluations), negatives (train split, mined
negatives, the epoch plan), title_pairs (the pairs source), cards (the card and its publication).

Training is sentence-transformers' SentenceTransformerTrainer (on the transformers Trainer):
MultipleNegativesRankingLoss with hard-negative columns (or its GradCache variant), which is
Tevatron's loss: cross-entropy over [own positive, own negatives, every other query's passages]
with logits = similarity / temperature. fp16/bf16, multi-GPU (torchrun; in-batch negatives
gathered across devices), checkpointing and resume come from the trainer.

Record (issues 25, 27): each step's loss and learning rate, and held-out evaluations when train
queries (or pairs) are held out, go to `<weights>/finetune_log.json` with chance = ln(candidates
per query) and the final-window loss; a loss that is NaN or infinite stops the run at once with
one line, and no card is written.

Crash safety: everything in progress lives in `<checkpoints>/<name>.partial/`; the weights
folder and the card appear (by rename) only after training finished, so a kill -9 at any point
leaves no half card, and a re-run with the same settings resumes from the last checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from benchmark.catalog.registry import DenseConfig, ModelCard
from benchmark.training.cards import LOG_FILE, DataText, card_yaml, eval_config, publish
from benchmark.training.checkpoints import read_state_json
from benchmark.training.finetune_log import HeldOutValidation, build_training_log, curve_summary
from benchmark.training.finetune_trainer import (  # noqa: F401 - public names kept here
    build_loss,
    build_model,
    is_main_process,
    library_versions,
    max_positions,
    passive_thread_wait,
    train_stage,
    world_size,
)
from benchmark.training.negatives import (
    TrainData,
    load_negatives,
    load_train_data,
    mine_negatives,
    negatives_digest,
    plan_epochs,
    save_negatives,
)
from benchmark.training.recipes import FinetuneError, Recipe, load_recipe  # noqa: F401 - re-exported
from benchmark.training.title_pairs import (
    HELDOUT_SEED,
    TitlePairs,
    check_recipe,
    load_title_pairs,
    parse_source,
)

log = logging.getLogger(__name__)

STATE_FILE = "maebench-finetune.json"


@dataclass
class FinetuneResult:
    """What a run produced; `model` is the in-memory sentence-transformers model (tests compare
    its vectors with the ones the saved card gives)."""

    card_path: Path
    weights_dir: Path
    model: Any
    steps: int
    final_loss: float | None


def default_name(backbone: str, task: str, recipe: str, seed: int) -> str:
    return f"{backbone}-ft-{task}-{recipe}-s{seed}"


def finetune_card(
    backbone: ModelCard,
    task: str,
    recipe: str = "standard",
    seed: int = 0,
    name: str | None = None,
    overrides: dict[str, str] | None = None,
    data_dir: Path | None = None,
    device: str | None = None,
    overwrite: bool = False,
    models_dir: Path | None = None,
    command: str | None = None,
    progress: bool = True,
    held_out: frozenset[str] | None = None,
    validate_every: int | None = None,
) -> Path:
    """Fine-tune `backbone` on `task`'s train split (or, for `titles:<tasks>`, on their title ->
    text pairs) with `recipe` and write the new card; returns the card's path. The public entry
    point (also used by `maebench study`, whose learning-rate pilot holds train queries out:
    `held_out`, which are then also the validation set, evaluated every `validate_every` steps:
    see run_finetune)."""
    return run_finetune(
        backbone, task, recipe, seed, name, overrides, data_dir, device, overwrite, models_dir,
        command=command, progress=progress, held_out=held_out, validate_every=validate_every,
    ).card_path


@dataclass
class Source:
    """What a run trains on: a task's train split, or title -> text pairs (`pairs`)."""

    task: str  # as the card records it: the task's name, or titles:<tasks>
    label: str  # in default card names
    data: TrainData  # trained on
    full: TrainData  # with the held-out rows: the validation set is drawn from it
    held_out: frozenset[str]
    pairs: TitlePairs | None = None


def training_source(task: str, recipe: Recipe, data_dir: Path | None,
                    held_out: frozenset[str] | None) -> Source:
    """The data of `task`, checked before any work: a task's train split without the `held_out`
    queries (train queries only), or the pairs of a `titles:` source, which hold out their own
    seeded slice and take in-batch negatives only (group_size 1, one stage)."""
    from benchmark.catalog.tasks import get_task

    pairs_source = parse_source(task)
    if pairs_source is None:
        spec = get_task(task)
        full = load_train_data(spec, data_dir)
        if not held_out:
            return Source(spec.name, spec.name, full, full, frozenset())
        unknown = sorted(q for q in held_out if q not in full.dataset.qrels)
        if unknown:  # a validation set is made of train queries, never test ones
            raise FinetuneError(
                f"{len(unknown)} held-out query ids are not queries of {spec.name}'s train split "
                f"(e.g. '{unknown[0]}'); a validation set holds train queries only")
        return Source(spec.name, spec.name, hold_out(full, held_out), full, frozenset(held_out))
    if held_out:
        raise FinetuneError(f"{pairs_source.task} reads no queries: it holds out its own seeded "
                            "slice of pairs, so no validation queries can be given")
    check_recipe(pairs_source, recipe)
    pairs = load_title_pairs(pairs_source, data_dir)
    source = Source(pairs_source.task, pairs_source.label, pairs.train_data(), pairs.full,
                    pairs.held_out_ids, pairs)
    per_epoch = len(source.data.positives) // recipe.queries_per_step
    if recipe.max_steps and per_epoch * recipe.epochs < recipe.max_steps:
        raise FinetuneError(
            f"{pairs_source.task}: {len(source.data.positives)} pairs give {per_epoch} steps of "
            f"{recipe.queries_per_step} per epoch, {per_epoch * recipe.epochs} in {recipe.epochs} "
            f"epochs, fewer than max_steps {recipe.max_steps}; raise --set epochs")
    return source


def run_finetune(
    backbone: ModelCard,
    task: str,
    recipe: str = "standard",
    seed: int = 0,
    name: str | None = None,
    overrides: dict[str, str] | None = None,
    data_dir: Path | None = None,
    device: str | None = None,
    overwrite: bool = False,
    models_dir: Path | None = None,
    *,
    command: str | None = None,
    progress: bool = True,
    callbacks: list | None = None,
    held_out: frozenset[str] | None = None,
    validate_every: int | None = None,
) -> FinetuneResult:
    """finetune_card, returning everything (callbacks: extra trainer callbacks, for tests).

    Every run stores its curve (loss and learning rate of every step, the held-out evaluations)
    in `<weights>/finetune_log.json` (see finetune_log) and a summary in the card's notes.
    `held_out` train queries (never test) are left out of training and are the validation set:
    the contrastive loss on them (their positive, BM25 negatives, in-batch negatives, no dropout)
    at step 0, every `validate_every` steps (default: the recipe's save_steps) and at the end.
    A `titles:` source validates on its own held-out pairs (loss and top-1 accuracy)."""
    from benchmark.core.paths import checkpoints_dir
    from benchmark.core.paths import models_dir as default_models_dir
    from benchmark.core.provenance import hardware, now_utc

    started = time.monotonic()
    passive_thread_wait()
    resolved = load_recipe(recipe, overrides)
    pairs_source = parse_source(task)
    if pairs_source is None:
        from benchmark.catalog.tasks import get_task

        label = get_task(task).name
    else:
        label = pairs_source.label
    name = name or default_name(backbone.name, label, resolved.name, seed)
    config = _check_backbone(backbone, resolved)
    cards = models_dir or default_models_dir()
    card_path = cards / f"{name}.yaml"
    weights_dir = checkpoints_dir() / name
    work = checkpoints_dir() / f"{name}.partial"
    _check_name(name, card_path, weights_dir, work, overwrite)

    source_dir = _backbone_source(backbone, config)
    if validate_every is not None and validate_every < 1:
        raise FinetuneError(f"validate_every {validate_every}: give a number of steps >= 1")
    source = training_source(task, resolved, data_dir, held_out)
    data = source.data
    key = _run_key(backbone, source.task, resolved, seed, data)
    _prepare_work_dir(work, key, overwrite)

    stage_stats: list[dict] = []
    bm25 = {} if source.pairs else _bm25_negatives(data, resolved, work)
    every = validate_every or resolved.save_steps
    model, stats = train_stage(
        1, source_dir, config, data, bm25, resolved, seed, work, device, progress, callbacks,
        _validation(source, resolved, config, work, seed, every),
    )
    stage_stats.append(stats)
    mined_digest = negatives_digest(bm25)
    if resolved.stages == 2:
        mined = _stage2_negatives(model, config, data, resolved, work, device, name)
        pools = {q: _union(mined.get(q, []), bm25.get(q, []) if resolved.stage2_keep_bm25 else [])
                 for q in data.query_ids}
        mined_digest = negatives_digest({"stage1": bm25, "stage2": pools})
        # stage 2 restarts from the pre-trained weights, as CoT-MAE and coCondenser do
        model, stats = train_stage(
            2, source_dir, config, data, pools, resolved, seed, work, device, progress, callbacks,
            _validation(source, resolved, config, work, seed, every),
        )
        stage_stats.append(stats)

    if not is_main_process():
        return FinetuneResult(card_path, weights_dir, model, 0, None)
    final = work / "final"
    shutil.rmtree(final, ignore_errors=True)
    model.save(str(final), create_model_card=False)
    from benchmark.catalog.weights import weights_sha256

    digest = weights_sha256(final)
    steps = sum(s["steps"] for s in stage_stats)
    training_log = build_training_log(name, resolved, stage_stats, len(source.held_out),
                                      "title -> text pairs" if source.pairs else None)
    record = {
        "recipe": resolved.name,
        "resolved_recipe": resolved.values(),
        "overrides": dict(overrides or {}),
        "seed": seed,
        "backbone_checkpoint": config.checkpoint,
        "backbone_revision": config.revision,
        "train_data": _train_data_record(source, mined_digest),
        "stages": resolved.stages,
        "steps": steps,
        "final_loss": stage_stats[-1]["final_loss"],
        "mean_loss": stage_stats[-1]["mean_loss"],
        "weights_sha256": digest,
        "libraries": library_versions(),
        "hardware": hardware(),
        "devices": world_size(),
        "wall_time_s": round(time.monotonic() - started, 1),
        "finished_at": now_utc(),
        "command": command,
    }
    from benchmark.core.files import atomic_write

    # beside the weights, not part of their sha256 (weights_sha256 reads the tensor files only)
    atomic_write(final / LOG_FILE, json.dumps(training_log, indent=1).encode())
    card_text = card_yaml(backbone, config, resolved, source.task, seed, name, digest, record,
                          max_positions(source_dir), notes=curve_summary(training_log),
                          described=_described(source))
    publish(final, weights_dir, card_text, card_path, work)
    return FinetuneResult(card_path, weights_dir, model, steps, record["final_loss"])


def _train_data_record(source: Source, mined_digest: str) -> dict:
    """The card's record of the training data (catalog.registry.TrainDataRecord)."""
    if source.pairs is not None:
        return source.pairs.record()
    data = source.data
    return {
        "task": source.task,
        "split": data.dataset.task.split,
        "corpus_sha256": data.dataset.fingerprints.corpus,
        "queries_sha256": data.dataset.fingerprints.queries,
        "qrels_sha256": data.dataset.fingerprints.qrels,
        "negatives_sha256": mined_digest,
        "n_queries": len(data.positives),
        "n_pairs": sum(len(p) for p in data.positives.values()),
        "held_out_queries": len(source.held_out),
    }


def _described(source: Source) -> DataText | None:
    """How the card describes a pairs source (None: a task's train split, cards' own words)."""
    if source.pairs is None:
        return None
    pairs = source.pairs
    corpora = ", ".join(sorted(pairs.corpora))
    return DataText(
        trained_on=f"title -> text pairs of the {corpora} corpora (no queries, no qrels)",
        data=(f"title -> text pairs of the {corpora} corpora: {len(pairs.train)} pairs trained on, "
              f"{len(pairs.held_out)} held out (seeded), skipped {pairs.skipped}"),
        negatives="in-batch only: the other pairs' texts of the step",
        eval_task=sorted(pairs.corpora)[0],
    )


def _validation(source: Source, recipe: Recipe, config: DenseConfig, work: Path, seed: int,
                every: int) -> list:
    """The held-out evaluation callback (a list of zero or one), when rows are held out: train
    queries with BM25 negatives, or pairs (in-batch only, in batches fixed by HELDOUT_SEED so
    every seed of a study is validated alike, with top-1 accuracy beside the loss)."""
    if not source.held_out:
        return []
    positives = {q: source.full.positives[q] for q in sorted(source.held_out)
                 if q in source.full.positives}
    if not positives:
        return []
    data = replace(source.full, positives=positives)
    pairs = source.pairs is not None
    pools = {} if pairs else _bm25_negatives(data, recipe, work, tag="validation-")
    batch = min(recipe.queries_per_step, len(positives))
    plan = plan_epochs(data, pools, recipe.group_size, 1, batch, HELDOUT_SEED if pairs else seed)
    return [HeldOutValidation(plan, data, recipe, config, batch, every, accuracy=pairs)]


def sha256_of_lines(values: list[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(values).encode()).hexdigest()


# --- checks before any work ---------------------------------------------------------------


def _check_backbone(backbone: ModelCard, recipe: Recipe) -> DenseConfig:
    config = backbone.retriever
    if config.kind != "dense":
        raise FinetuneError(f"{backbone.name} is a {config.kind} card; only dense cards can be fine-tuned")
    if not config.has_checkpoint:
        raise FinetuneError(f"{backbone.name}: its weights were never released (weights: unreleased)")
    if config.encoder != "shared":
        raise FinetuneError(
            f"{backbone.name}: encoder '{config.encoder}'; the protocol fine-tunes one shared encoder "
            "(encoder: shared), as every MAE repository does"
        )
    if config.head:
        raise FinetuneError(
            f"{backbone.name}: a card with a head ({list(config.head)}) cannot be fine-tuned yet"
        )
    if config.title == "pair":
        raise FinetuneError(f"{backbone.name}: title mode 'pair' is not supported for fine-tuning")
    return config


def _check_name(name: str, card_path: Path, weights_dir: Path, work: Path, overwrite: bool) -> None:
    from benchmark.core.paths import check_name

    check_name(name, "--name", FinetuneError)
    if overwrite:
        return
    if card_path.exists():
        raise FinetuneError(f"model card {card_path} already exists; pass --overwrite to replace it")
    if weights_dir.exists() and not work.exists():
        raise FinetuneError(f"weights folder {weights_dir} already exists; pass --overwrite to replace it")


def _backbone_source(backbone: ModelCard, config: DenseConfig) -> str:
    """The backbone's weights folder or hub id, checked now (one line if unreachable), so a
    missing checkpoint fails before BM25 mining."""
    from transformers import AutoConfig

    from benchmark.catalog.weights import load_failure, resolve_checkpoint

    source, origin = resolve_checkpoint(config.checkpoint, config.local_package, config.revision)
    try:
        AutoConfig.from_pretrained(source, revision=config.revision if origin == "hub" else None)
    except (OSError, ValueError) as exc:
        raise load_failure(config.checkpoint, config.revision, exc) from exc
    if origin == "hub":
        from huggingface_hub import snapshot_download

        try:  # a local folder, so that the Trainer and sentence-transformers read the same files
            source = snapshot_download(config.checkpoint, revision=config.revision)
        except Exception as exc:  # noqa: BLE001 - any hub failure is a load failure
            raise load_failure(config.checkpoint, config.revision, exc) from exc
    return source


def hold_out(data: TrainData, queries: frozenset[str]) -> TrainData:
    """The train data without `queries` (a pilot's held-out share of the train split)."""
    from dataclasses import replace

    kept = {q: docs for q, docs in data.positives.items() if q not in queries}
    if not kept:
        raise FinetuneError(
            f"task '{data.task.name}': holding out {len(queries)} queries leaves none to train on")
    return replace(data, positives=kept)


def _run_key(backbone: ModelCard, task: str, recipe: Recipe, seed: int, data: TrainData) -> dict:
    """What must match for a re-run to resume an unfinished one."""
    return {
        "train_queries": sha256_of_lines(sorted(data.positives)),
        "backbone": backbone.model_dump(mode="json"),
        "task": task,
        "recipe": recipe.values(),
        "seed": seed,
        "qrels_sha256": data.dataset.fingerprints.qrels,
        "corpus_sha256": data.dataset.fingerprints.corpus,
        "world_size": world_size(),
    }


def _prepare_work_dir(work: Path, key: dict, overwrite: bool) -> None:
    state = work / STATE_FILE
    if not is_main_process():
        _wait_for_state(state, key)  # torch.distributed is not up yet: rank 0 decides, others wait
        return
    if work.exists():
        try:
            stored = read_state_json(state, "run key")  # a FIFO or a linked folder: one line
        except (OSError, json.JSONDecodeError):
            stored = None
        if stored == key:
            log.warning("resuming the unfinished run in %s", work)
            return
        if not state.exists():  # killed between creating the folder and writing its key
            log.warning("%s was never started (no run key); starting it afresh", work)
        elif not overwrite:
            raise FinetuneError(
                f"{work} holds an unfinished run with other settings; pass --overwrite to discard it"
            )
        shutil.rmtree(work)
    from benchmark.core.files import atomic_write

    work.mkdir(parents=True, exist_ok=True)
    atomic_write(state, json.dumps(key, sort_keys=True).encode())


def _wait_for_state(state: Path, key: dict, timeout_s: float = 600.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if read_state_json(state, "run key") == key:
                return
        except (OSError, json.JSONDecodeError):
            pass
        time.sleep(1.0)
    raise FinetuneError(f"rank {os.environ.get('RANK')}: rank 0 did not prepare {state.parent} in time")


# --- negatives ------------------------------------------------------------------------------


def _bm25_negatives(data: TrainData, recipe: Recipe, work: Path, tag: str = "") -> dict[str, list[str]]:
    """Stage-1 pools from the recipe's BM25 card, cached in the work folder (a resumed run
    trains on exactly the same negatives); `tag` names another cache (the validation set's)."""
    from benchmark.catalog.registry import get_card
    from benchmark.retrievers import build_retriever

    cache = work / f"negatives-{tag}{recipe.negatives_card}-{recipe.negatives_depth}.json"
    mined = load_negatives(cache, data)  # checked against the train data
    if mined is None:
        retriever = build_retriever(get_card(recipe.negatives_card))
        mined = mine_negatives(retriever, data, recipe.negatives_depth)
        if is_main_process():
            save_negatives(cache, mined)
    return mined


def _stage2_negatives(
    model, config: DenseConfig, data: TrainData, recipe: Recipe, work: Path, device: str | None,
    name: str,
) -> dict[str, list[str]]:
    """Negatives mined by the stage-1 model (depth stage2_mining_depth) with maebench's dense
    retriever, reading the stage-1 weights saved in the work folder."""
    from benchmark.retrievers.dense import DenseRetriever

    cache = work / f"negatives-stage2-{recipe.stage2_mining_depth}.json"
    mined = load_negatives(cache, data)  # checked against the train data
    if mined is not None:
        return mined
    stage1 = work / "stage1-final"
    stage1_config = eval_config(config, recipe, str(stage1), None, data.task.name, max_positions(str(stage1)))
    retriever = DenseRetriever(stage1_config, device=device, name=f"{name} (stage 1)")
    mined = mine_negatives(retriever, data, recipe.stage2_mining_depth)
    if is_main_process():
        save_negatives(cache, mined)
    return mined


def _union(first: list[str], second: list[str]) -> list[str]:
    return list(dict.fromkeys([*first, *second]))

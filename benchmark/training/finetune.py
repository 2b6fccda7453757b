"""`maebench finetune`: one fine-tuning protocol (a recipe) applied to any dense backbone card.

backbone card + task's train split + recipe + seed -> weights under $MAEBENCH_HOME/checkpoints/
<name> (a plain Hugging Face folder, also loadable by sentence-transformers) -> a new card in
models/ that `maebench run` evaluates like any other, with `finetuned_from` and a full record.

Training is sentence-transformers' SentenceTransformerTrainer (on the transformers Trainer):
MultipleNegativesRankingLoss with hard-negative columns (or its GradCache variant), which is
Tevatron's loss: cross-entropy over [own positive, own negatives, every other query's passages]
with logits = similarity / temperature. fp16/bf16, multi-GPU (torchrun; in-batch negatives
gathered across devices), checkpointing and resume come from the trainer.

Speed (issue 26): every text is tokenised once before training (sampler.TokenCache; the
collator pads cached ids), the loss computes [CLS] vectors with the last layer reduced to the
[CLS] row and queries in length-sorted chunks (sampler.ClsMultipleNegativesRankingLoss: the same
loss and gradients, a test compares them with sentence-transformers' own computation), torch
uses every CPU of the process's affinity and OpenMP threads wait passive (passive_thread_wait).
`python bench/bench_finetune_steps.py` times this against 1d80994.

Record (issues 25, 27): each step's loss and learning rate, and held-out evaluations when train
queries are held out, go to `<weights>/finetune_log.json` (build_training_log; read back with
cards.finetune_curve) with chance = ln(candidates per query) and the final-window loss; a loss
that is NaN or infinite stops the run at once with one line, and no card is written.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.catalog.registry import DenseConfig, ModelCard
from benchmark.core.errors import MaebenchError, ModelLoadError
from benchmark.training.cards import LOG_FILE, LOG_VERSION, card_yaml, eval_config, publish
from benchmark.training.checkpoints import barrier, read_state_json
from benchmark.training.negatives import (
    Example,
    TrainData,
    load_negatives,
    load_train_data,
    mine_negatives,
    negatives_digest,
    plan_epochs,
    save_negatives,
)
from benchmark.training.recipes import FinetuneError, Recipe, load_recipe  # noqa: F401 - re-exported

log = logging.getLogger(__name__)

QUERY_COLUMN = "anchor"
POSITIVE_COLUMN = "positive"
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
    """Fine-tune `backbone` on `task`'s train split with `recipe` and write the new card;
    returns the card's path. The public entry point (also used by `maebench study`, whose
    learning-rate pilot holds train queries out: `held_out`, which are then also the validation
    set, evaluated every `validate_every` steps: see run_finetune)."""
    return run_finetune(
        backbone, task, recipe, seed, name, overrides, data_dir, device, overwrite, models_dir,
        command=command, progress=progress, held_out=held_out, validate_every=validate_every,
    ).card_path


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
    in `<weights>/finetune_log.json` (see training_log) and a summary in the card's notes.
    `held_out` train queries (never test) are left out of training and are the validation set:
    the contrastive loss on them (their positive, BM25 negatives, in-batch negatives, no dropout)
    at step 0, every `validate_every` steps (default: the recipe's save_steps) and at the end."""
    from benchmark.catalog.tasks import get_task
    from benchmark.core.paths import checkpoints_dir
    from benchmark.core.paths import models_dir as default_models_dir
    from benchmark.core.provenance import hardware, now_utc

    started = time.monotonic()
    passive_thread_wait()
    resolved = load_recipe(recipe, overrides)
    spec = get_task(task)
    name = name or default_name(backbone.name, spec.name, resolved.name, seed)
    config = _check_backbone(backbone, resolved)
    cards = models_dir or default_models_dir()
    card_path = cards / f"{name}.yaml"
    weights_dir = checkpoints_dir() / name
    work = checkpoints_dir() / f"{name}.partial"
    _check_name(name, card_path, weights_dir, work, overwrite)

    source = _backbone_source(backbone, config)
    data = load_train_data(spec, data_dir)
    full = data
    if held_out:
        unknown = sorted(q for q in held_out if q not in full.dataset.qrels)
        if unknown:  # a validation set is made of train queries, never test ones
            raise FinetuneError(
                f"{len(unknown)} held-out query ids are not queries of {spec.name}'s train split "
                f"(e.g. '{unknown[0]}'); a validation set holds train queries only")
        data = hold_out(data, held_out)
    if validate_every is not None and validate_every < 1:
        raise FinetuneError(f"validate_every {validate_every}: give a number of steps >= 1")
    key = _run_key(backbone, spec.name, resolved, seed, data)
    _prepare_work_dir(work, key, overwrite)

    stage_stats: list[dict] = []
    bm25 = _bm25_negatives(data, resolved, work)
    validation = _validation(full, held_out, resolved, config, work, seed,
                             validate_every or resolved.save_steps)
    model, stats = _train_stage(
        1, source, config, data, bm25, resolved, seed, work, device, progress, callbacks,
        validation,
    )
    stage_stats.append(stats)
    mined_digest = negatives_digest(bm25)
    if resolved.stages == 2:
        mined = _stage2_negatives(model, config, data, resolved, work, device, name)
        pools = {q: _union(mined.get(q, []), bm25.get(q, []) if resolved.stage2_keep_bm25 else [])
                 for q in data.query_ids}
        mined_digest = negatives_digest({"stage1": bm25, "stage2": pools})
        # stage 2 restarts from the pre-trained weights, as CoT-MAE and coCondenser do
        model, stats = _train_stage(
            2, source, config, data, pools, resolved, seed, work, device, progress, callbacks,
            _validation(full, held_out, resolved, config, work, seed,
                        validate_every or resolved.save_steps),
        )
        stage_stats.append(stats)

    if not _is_main_process():
        return FinetuneResult(card_path, weights_dir, model, 0, None)
    final = work / "final"
    shutil.rmtree(final, ignore_errors=True)
    model.save(str(final), create_model_card=False)
    from benchmark.catalog.weights import weights_sha256

    digest = weights_sha256(final)
    steps = sum(s["steps"] for s in stage_stats)
    training_log = build_training_log(name, resolved, stage_stats, len(held_out or ()))
    record = {
        "recipe": resolved.name,
        "resolved_recipe": resolved.values(),
        "overrides": dict(overrides or {}),
        "seed": seed,
        "backbone_checkpoint": config.checkpoint,
        "backbone_revision": config.revision,
        "train_data": {
            "task": spec.name,
            "split": data.dataset.task.split,
            "corpus_sha256": data.dataset.fingerprints.corpus,
            "queries_sha256": data.dataset.fingerprints.queries,
            "qrels_sha256": data.dataset.fingerprints.qrels,
            "negatives_sha256": mined_digest,
            "n_queries": len(data.positives),
            "n_pairs": sum(len(p) for p in data.positives.values()),
            "held_out_queries": len(held_out or ()),
        },
        "stages": resolved.stages,
        "steps": steps,
        "final_loss": stage_stats[-1]["final_loss"],
        "mean_loss": stage_stats[-1]["mean_loss"],
        "weights_sha256": digest,
        "libraries": _library_versions(),
        "hardware": hardware(),
        "devices": _world_size(),
        "wall_time_s": round(time.monotonic() - started, 1),
        "finished_at": now_utc(),
        "command": command,
    }
    from benchmark.core.files import atomic_write

    # beside the weights, not part of their sha256 (weights_sha256 reads the tensor files only)
    atomic_write(final / LOG_FILE, json.dumps(training_log, indent=1).encode())
    card_text = card_yaml(backbone, config, resolved, spec.name, seed, name, digest, record,
                          max_positions(source), notes=curve_summary(training_log))
    publish(final, weights_dir, card_text, card_path, work)
    return FinetuneResult(card_path, weights_dir, model, steps, record["final_loss"])


# --- the training log: every step's loss and learning rate, held-out evaluations -------------

FINAL_WINDOW = 10  # steps in the "final training loss" that the fine-tuning gate compares


def chance_loss(recipe: Recipe) -> tuple[int, float]:
    """(candidates per query, ln of it): the loss of a model that cannot tell its positive from
    the other candidates (its group and every other query's group, on every device)."""
    import math

    candidates = recipe.queries_per_step * recipe.group_size
    return candidates, math.log(candidates)


def build_training_log(name: str, recipe: Recipe, stage_stats: list[dict], held_out: int) -> dict:
    """What finetune_log.json holds: per step (stage, step, loss, lr), the validation entries,
    chance = ln(candidates per query) and the mean loss of the last FINAL_WINDOW steps of the
    last stage with its share of chance (the fine-tuning gate's "final training loss")."""
    candidates, chance = chance_loss(recipe)
    steps = [{"stage": i + 1, "step": e["step"], "loss": e["loss"], "lr": e["lr"]}
             for i, stats in enumerate(stage_stats) for e in stats.get("curve", [])]
    validation = [{"stage": i + 1, **{k: v for k, v in e.items() if k != "stage"}}
                  for i, stats in enumerate(stage_stats) for e in stats.get("validation", [])]
    last = [e["loss"] for e in stage_stats[-1].get("curve", [])][-FINAL_WINDOW:] if stage_stats else []
    window = sum(last) / len(last) if last else None
    return {
        "version": LOG_VERSION,
        "name": name,
        "recipe": recipe.name,
        "candidates_per_query": candidates,
        "chance_loss": chance,
        "final_window_steps": len(last),
        "final_window_loss": window,
        "final_window_share_of_chance": window / chance if window is not None else None,
        "held_out_queries": held_out,
        "steps": steps,
        "validation": validation,
    }


def curve_summary(training_log: dict) -> str:
    """One sentence for the card's notes (the card's record has no field for it)."""
    steps = training_log["steps"]
    if not steps:
        return f"training log: {LOG_FILE} beside the weights (no step recorded)"
    text = (f"training curve ({LOG_FILE} beside the weights): {len(steps)} steps, loss "
            f"{steps[0]['loss']:.4f} -> {steps[-1]['loss']:.4f}; mean of the last "
            f"{training_log['final_window_steps']} steps {training_log['final_window_loss']:.4f} = "
            f"{training_log['final_window_share_of_chance']:.3f} of chance (ln "
            f"{training_log['candidates_per_query']} = {training_log['chance_loss']:.4f})")
    held = training_log["validation"]
    if held:
        text += (f"; held-out loss ({training_log['held_out_queries']} train queries) "
                 f"{held[0]['validation_loss']:.4f} at step {held[0]['step']} -> "
                 f"{held[-1]['validation_loss']:.4f} at step {held[-1]['step']}")
    return text


def _validation(full: TrainData, held_out: frozenset[str] | None, recipe: Recipe,
                config: DenseConfig, work: Path, seed: int, every: int) -> list:
    """The held-out evaluation callback (a list of zero or one), when train queries are held out."""
    if not held_out:
        return []
    from dataclasses import replace

    positives = {q: full.positives[q] for q in sorted(held_out) if q in full.positives}
    if not positives:
        return []
    data = replace(full, positives=positives)
    pools = _bm25_negatives(data, recipe, work, tag="validation-")
    batch = min(recipe.queries_per_step, len(positives))
    plan = plan_epochs(data, pools, recipe.group_size, 1, batch, seed)
    return [HeldOutValidation(plan, data, recipe, config, batch, every)]


def HeldOutValidation(plan: list[Example], data: TrainData, recipe: Recipe, config: DenseConfig,  # noqa: N802
                      batch: int, every: int):
    """Held-out contrastive loss (eval mode: no dropout, so no random numbers drawn and the
    training's own stream is untouched) at step 0, every `every` steps and at the last step,
    appended to the trainer's log_history (saved in every checkpoint, so a resumed run keeps
    the entries before its checkpoint)."""
    import math

    from transformers import TrainerCallback

    candidates = batch * recipe.group_size

    class _Validation(TrainerCallback):
        def __init__(self) -> None:
            self.trainer = None
            self.batches: list[list[dict]] = []

        def bind(self, trainer) -> None:
            self.trainer = trainer
            dataset, cache = build_dataset(plan, data, recipe, config, trainer.model)
            columns = dataset.column_names
            for start in range(0, len(dataset), batch):
                rows = dataset[start:start + batch]
                self.batches.append([
                    cache.preprocess(rows[col], task="query" if col == QUERY_COLUMN else "document")
                    for col in columns])

        def evaluate(self, state) -> None:
            import torch

            model = self.trainer.model
            was_training = model.training
            model.eval()
            try:
                with torch.no_grad():
                    losses = [float(self.trainer.loss(_to_device(features, model.device), None))
                              for features in self.batches]
            finally:
                model.train(was_training)
            value = sum(losses) / len(losses)
            state.log_history.append({"step": int(state.global_step), "validation_loss": value,
                                      "validation_chance": math.log(candidates),
                                      "validation_queries": len(plan)})

        def on_train_begin(self, args, state, control, **kwargs):
            if state.global_step == 0 and self.batches:
                self.evaluate(state)

        def on_step_end(self, args, state, control, **kwargs):
            if self.batches and (state.global_step % every == 0 or state.global_step == state.max_steps):
                self.evaluate(state)

    return _Validation()


def _to_device(features: list[dict], device) -> list[dict]:
    return [{k: v.to(device) if hasattr(v, "to") else v for k, v in f.items()} for f in features]


def max_positions(source: str) -> int | None:
    """The checkpoint's position embeddings (None when its config does not say)."""
    from transformers import AutoConfig

    return getattr(AutoConfig.from_pretrained(source), "max_position_embeddings", None)


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
        "world_size": _world_size(),
    }


def _prepare_work_dir(work: Path, key: dict, overwrite: bool) -> None:
    state = work / STATE_FILE
    if not _is_main_process():
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
        if _is_main_process():
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
    if _is_main_process():
        save_negatives(cache, mined)
    return mined


def _union(first: list[str], second: list[str]) -> list[str]:
    return list(dict.fromkeys([*first, *second]))


# --- training -------------------------------------------------------------------------------


def build_model(source: str, recipe: Recipe, device: str | None = None):
    """A sentence-transformers model over the backbone: Transformer (query/passage lengths by
    task) + pooling (+ L2 normalisation for cosine). It encodes exactly as the new card will."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    transformer = Transformer(
        source, query_length=recipe.query_max_length, document_length=recipe.passage_max_length
    )
    modules = [transformer, Pooling(transformer.get_embedding_dimension(), recipe.pooling)]
    if recipe.similarity == "cosine":
        modules.append(Normalize())
    # the saved config_sentence_transformers.json then states the card's similarity (its default,
    # cosine, would contradict a dot-product card)
    return SentenceTransformer(modules=modules, device=device, similarity_fn_name=recipe.similarity)


def build_loss(model, recipe: Recipe, fast: bool = True):
    """Tevatron's contrastive loss: CE over [positives | negatives] of the whole batch (and of
    every device with gather_across_devices), logits = similarity / temperature. `fast`: the
    same loss with [CLS] vectors computed without the last layer's unused rows
    (sampler.ClsMultipleNegativesRankingLoss; it falls back to sentence-transformers' own path
    wherever that shortcut does not apply)."""
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )
    from sentence_transformers.util import cos_sim, dot_score

    similarity = cos_sim if recipe.similarity == "cosine" else dot_score
    kwargs = {
        "scale": 1.0 / recipe.temperature,
        "similarity_fct": similarity,
        "gather_across_devices": recipe.gather_across_devices and _world_size() > 1,
    }
    if recipe.mini_batch_size:
        return CachedMultipleNegativesRankingLoss(model, mini_batch_size=recipe.mini_batch_size, **kwargs)
    if fast:
        from benchmark.training.sampler import ClsMultipleNegativesRankingLoss

        return ClsMultipleNegativesRankingLoss(model, **kwargs)
    return MultipleNegativesRankingLoss(model, **kwargs)


def negative_columns(group_size: int) -> list[str]:
    return [f"negative_{i}" for i in range(1, group_size)]


def build_dataset(plan: list[Example], data: TrainData, recipe: Recipe, config: DenseConfig,
                  model=None):
    """Rows hold integer ids (an MS MARCO plan would not fit in memory as text). With `model`,
    every text the plan uses is tokenised once, here, into a sampler.TokenCache, and the rows
    are row numbers into it (returns (dataset, cache); the trainer's collator pads cached ids);
    without, a datasets transform turns the ids into texts on access (returns the dataset), the
    path before the cache. Texts are formatted as the card will format them at evaluation
    (prefixes, title mode)."""
    from datasets import Dataset as HFDataset

    from benchmark.retrievers.base import document_text

    def passage_format(doc) -> str:
        return config.passage_prefix + document_text(doc, config.title, config.title_separator)

    doc_ids = list(data.dataset.corpus)
    doc_index = {d: i for i, d in enumerate(doc_ids)}
    query_ids = data.query_ids
    query_index = {q: i for i, q in enumerate(query_ids)}
    columns: dict[str, list[int]] = {
        QUERY_COLUMN: [query_index[e.query_id] for e in plan],
        POSITIVE_COLUMN: [doc_index[e.positive] for e in plan],
    }
    for i, col in enumerate(negative_columns(recipe.group_size)):
        columns[col] = [doc_index[e.negatives[i]] for e in plan]
    queries = [config.query_prefix + data.dataset.queries[q] for q in query_ids]
    corpus = data.dataset.corpus

    def to_text(batch: dict[str, list[int]]) -> dict[str, list[str]]:
        out = {QUERY_COLUMN: [queries[i] for i in batch[QUERY_COLUMN]]}
        for col, values in batch.items():
            if col != QUERY_COLUMN:
                out[col] = [passage_format(corpus[doc_ids[i]]) for i in values]
        return out

    if model is not None:
        return _cached_dataset(plan, columns, queries, doc_ids, corpus, passage_format, recipe, model)
    dataset = HFDataset.from_dict(columns)
    dataset.set_transform(to_text)
    return dataset


def _cached_dataset(plan: list[Example], columns: dict[str, list[int]], queries: list[str],
                    doc_ids: list[str], corpus, passage_format, recipe: Recipe, model):
    """The plan's rows as row numbers into a TokenCache of only the texts the plan uses
    (queries in plan order of first use, passages likewise), each tokenised once."""
    from datasets import Dataset as HFDataset

    from benchmark.training.sampler import TokenCache

    used_queries = list(dict.fromkeys(columns[QUERY_COLUMN]))
    used_docs = list(dict.fromkeys(i for col, values in columns.items() if col != QUERY_COLUMN
                                   for i in values))
    query_row = {q: r for r, q in enumerate(used_queries)}
    doc_row = {d: r for r, d in enumerate(used_docs)}
    cache = TokenCache(
        model[0].tokenizer,
        {"query": [queries[i] for i in used_queries],
         "document": [passage_format(corpus[doc_ids[i]]) for i in used_docs]},
        {"query": recipe.query_max_length, "document": recipe.passage_max_length},
    )
    rows = {col: [(query_row if col == QUERY_COLUMN else doc_row)[i] for i in values]
            for col, values in columns.items()}
    return HFDataset.from_dict(rows), cache


def _train_stage(
    stage: int, source: str, config: DenseConfig, data: TrainData, pools: dict[str, list[str]],
    recipe: Recipe, seed: int, work: Path, device: str | None, progress: bool, callbacks: list | None,
    validation: list | None = None,
):
    """Train one stage from `source`, resuming from the stage's last checkpoint when there is
    one; a finished stage (its `stage<N>-final` folder exists) is loaded, not retrained."""
    from sentence_transformers import SentenceTransformer

    final = work / f"stage{stage}-final"
    stats_file = final / "maebench-stage.json"
    if stats_file.is_file():
        log.warning("stage %d already finished in %s", stage, final)
        return SentenceTransformer(str(final), device=device), json.loads(stats_file.read_text())

    epochs = recipe.epochs if stage == 1 else recipe.stage2_epochs
    plan = plan_epochs(data, pools, recipe.group_size, epochs, recipe.queries_per_step, seed + stage - 1)
    use_cores(device)
    model = build_model(source, recipe, _torch_device(device))
    dataset, cache = build_dataset(plan, data, recipe, config, model)
    trainer = _trainer(model, dataset, recipe, seed, work / f"stage{stage}", device, progress,
                       [*(validation or []), *(callbacks or [])], cache)
    resume = _last_checkpoint(work / f"stage{stage}")
    if resume:
        log.warning("stage %d: resuming from %s", stage, resume)
        trainer.curve = load_curve(resume)
    output = _train_with_oom_message(trainer, resume, recipe)
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    stats = {
        "steps": int(trainer.state.global_step),
        "final_loss": float(losses[-1]) if losses else None,
        "mean_loss": float(output.training_loss) if output is not None else None,
        "resumed_from": resume.name if resume else None,
        "curve": trainer.curve,
        "validation": [e for e in trainer.state.log_history if "validation_loss" in e],
    }
    if _is_main_process():
        tmp = work / f"stage{stage}-final.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save(str(tmp), create_model_card=False)
        (tmp / "maebench-stage.json").write_text(json.dumps(stats))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    barrier()
    return model, stats


def _trainer(model, dataset, recipe: Recipe, seed: int, output_dir: Path, device: str | None,
             progress: bool, callbacks: list | None, cache=None):
    from sentence_transformers import SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.data_collator import SentenceTransformerDataCollator

    from benchmark.training.checkpoints import CommitCheckpoints
    from benchmark.training.sampler import FinetuneTrainer, SequentialBatchSampler

    world = _world_size()
    if recipe.queries_per_step % world:
        raise FinetuneError(
            f"queries_per_step {recipe.queries_per_step} does not divide over {world} processes; "
            "set --set queries_per_step to a multiple of the process count"
        )

    documents = {col: "document" for col in [POSITIVE_COLUMN, *negative_columns(recipe.group_size)]}
    use_cpu = (device or "").startswith("cpu") or not _cuda_available()
    args = SentenceTransformerTrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=recipe.queries_per_step // world,
        num_train_epochs=1,  # the dataset already holds every epoch
        max_steps=recipe.max_steps or -1,
        learning_rate=recipe.lr,
        lr_scheduler_type=recipe.lr_scheduler,
        lr_scheduler_kwargs={"min_lr_rate": recipe.min_lr_ratio}
        if recipe.lr_scheduler == "cosine_with_min_lr" else {},
        warmup_steps=recipe.warmup_steps if recipe.warmup_steps else recipe.warmup_ratio,
        weight_decay=recipe.weight_decay,
        max_grad_norm=recipe.max_grad_norm,
        fp16=recipe.precision == "fp16",
        bf16=recipe.precision == "bf16",
        seed=seed,
        data_seed=seed,
        save_strategy="steps",
        save_steps=recipe.save_steps,
        save_total_limit=recipe.save_total_limit,
        logging_steps=recipe.logging_steps,
        report_to="none",
        disable_tqdm=not progress,
        use_cpu=use_cpu,
        dataloader_drop_last=False,
        router_mapping={QUERY_COLUMN: "query", **documents},
        batch_sampler=SequentialBatchSampler,
    )
    collator = None
    if cache is not None:
        collator = SentenceTransformerDataCollator(preprocess_fn=cache.preprocess,
                                                   router_mapping=args.router_mapping)
    # SaveCurve before CommitCheckpoints: the curve file is part of the committed checkpoint
    save_curve = SaveCurve()
    trainer = FinetuneTrainer(
        model=model, args=args, train_dataset=dataset, loss=build_loss(model, recipe),
        data_collator=collator,
        callbacks=[ThroughputCallback(recipe.queries_per_step), save_curve, CommitCheckpoints(),
                   *(callbacks or [])],
    )
    save_curve.trainer = trainer
    for callback in callbacks or []:
        if hasattr(callback, "bind"):
            callback.bind(trainer)
    return trainer


CURVE_FILE = "maebench-curve.json"


def SaveCurve():  # noqa: N802 - a class built lazily (transformers)
    """Writes the per-step curve so far into each checkpoint folder before it is committed, so
    a resumed run's curve is the uninterrupted run's (load_curve reads it back)."""
    from transformers import TrainerCallback

    class _SaveCurve(TrainerCallback):
        def on_save(self, args, state, control, model=None, **kwargs):
            trainer = getattr(self, "trainer", None)
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if trainer is None or not folder.is_dir() or not state.is_world_process_zero:
                return
            curve = [e for e in trainer.curve if e["step"] <= state.global_step]
            (folder / CURVE_FILE).write_text(json.dumps(curve), encoding="utf-8")

    return _SaveCurve()


def load_curve(checkpoint: Path) -> list[dict]:
    """The curve a committed checkpoint carries (empty when it has none: a checkpoint saved by
    an older maebench, whose resumed run then logs only the steps after it)."""
    from benchmark.core.paths import load_json_bounded

    path = checkpoint / CURVE_FILE
    if not path.is_file():
        return []
    try:
        entries = load_json_bounded(path, 64 << 20, "training curve")
    except MaebenchError:
        return []
    if not isinstance(entries, list):
        return []
    return [e for e in entries if isinstance(e, dict) and isinstance(e.get("step"), int)
            and isinstance(e.get("loss"), (int, float)) and isinstance(e.get("lr"), (int, float))]


def passive_thread_wait() -> bool:
    """Let torch's OpenMP threads sleep, not spin, while they wait for work
    (OMP_WAIT_POLICY=PASSIVE), unless the user chose a policy. Measured on the 2-core AMD EPYC
    (AVX2) this project runs on, shared with other jobs (load 4-6), one fine-tuning step of the
    study's cell: 12.8 CPU-s and 15-19 s wall with libgomp's default spinning against 5.6 CPU-s
    and 8-9 s wall passive (1 thread: 5.3 CPU-s, 7-8 s). A spinning thread burns its core while
    the other is descheduled or runs Python between kernels. libgomp reads the variable when
    torch loads it, so this only takes effect before the first `import torch` of the process
    (`maebench finetune` calls it first thing); returns whether it did."""
    import sys

    if "torch" in sys.modules or "OMP_WAIT_POLICY" in os.environ:
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


def use_cores(device: str | None) -> None:
    """Torch's intra-op threads = the CPUs this process may run on (its affinity mask, which a
    container or taskset narrows; os.cpu_count() would count the host's), unless the user set
    OMP_NUM_THREADS. Both cores of a 2-core machine then share every matrix product."""
    import torch

    if (device or "cpu").startswith("cuda") or os.environ.get("OMP_NUM_THREADS"):
        return
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    if cores >= 1 and torch.get_num_threads() != cores:
        torch.set_num_threads(cores)


def ThroughputCallback(queries_per_step: int):  # noqa: N802 - a class built lazily (transformers)
    """Adds queries/s to the logged values, which the trainer's progress bar prints."""
    from transformers import TrainerCallback

    class _Throughput(TrainerCallback):
        def __init__(self) -> None:
            self.start: float | None = None
            self.start_step = 0

        def on_train_begin(self, args, state, control, **kwargs):
            self.start, self.start_step = time.monotonic(), state.global_step

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs is not None and self.start is not None and "loss" in logs:
                elapsed = max(time.monotonic() - self.start, 1e-9)
                done = (state.global_step - self.start_step) * queries_per_step
                logs["queries_per_s"] = round(done / elapsed, 2)

    return _Throughput()


def _train_with_oom_message(trainer, resume: Path | None, recipe: Recipe):
    import torch

    try:
        return trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except (torch.OutOfMemoryError, MemoryError, RuntimeError) as exc:
        text = str(exc)
        if not isinstance(exc, (torch.OutOfMemoryError, MemoryError)) and not (
            "out of memory" in text.lower() or "can't allocate memory" in text.lower()
        ):
            raise
        texts = recipe.queries_per_step * recipe.group_size
        raise FinetuneError(
            f"out of memory with {recipe.queries_per_step} queries x {recipe.group_size} passages per step "
            f"({texts} texts in one forward pass); turn on GradCache with --set mini_batch_size=32 (same "
            "loss, bounded memory), or lower --set group_size / passage_max_length / queries_per_step; "
            "a re-run resumes from the last checkpoint"
        ) from exc


def _last_checkpoint(output_dir: Path) -> Path | None:
    """The newest committed checkpoint (benchmark.training.checkpoints): one a kill -9 tore
    during its save is removed, and training resumes from the one before."""
    from benchmark.training.checkpoints import newest_committed

    found = newest_committed(output_dir, "checkpoint")
    return found[0] if found else None


# --- environment ----------------------------------------------------------------------------


def _library_versions() -> dict[str, str | None]:
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for package in ("torch", "transformers", "sentence-transformers", "accelerate", "datasets", "bm25s"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _torch_device(device: str | None) -> str | None:
    if device and device.startswith("cuda") and not _cuda_available():
        raise ModelLoadError(f"--device {device}: CUDA is not available here")
    return device

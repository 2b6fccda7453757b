"""The fine-tuning loop: one stage of training with sentence-transformers' trainer.

finetune.run_finetune decides what to train on and writes the card; this module turns a plan of
rows (negatives.Example) into a trained model: the sentence-transformers model over the backbone
(build_model), Tevatron's contrastive loss (build_loss), the rows as a dataset of cached token ids
(build_dataset), the trainer with its callbacks (curve saved into each checkpoint, throughput),
resume from the last committed checkpoint, and the process's threads and devices.

Speed (issue 26): every text is tokenised once before training (sampler.TokenCache; the
collator pads cached ids), the loss computes [CLS] vectors with the last layer reduced to the
[CLS] row and queries in length-sorted chunks (sampler.ClsMultipleNegativesRankingLoss: the same
loss and gradients, a test compares them with sentence-transformers' own computation), torch
uses every CPU of the process's affinity and OpenMP threads wait passive (passive_thread_wait).
`python bench/bench_finetune_steps.py` times this against 1d80994.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

from benchmark.catalog.registry import DenseConfig
from benchmark.core.errors import MaebenchError, ModelLoadError
from benchmark.training.checkpoints import barrier
from benchmark.training.negatives import Example, TrainData, plan_epochs
from benchmark.training.recipes import FinetuneError, Recipe

log = logging.getLogger(__name__)

QUERY_COLUMN = "anchor"
POSITIVE_COLUMN = "positive"


# --- one stage -------------------------------------------------------------------------------


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
        "gather_across_devices": recipe.gather_across_devices and world_size() > 1,
    }
    if recipe.mini_batch_size:
        return CachedMultipleNegativesRankingLoss(model, mini_batch_size=recipe.mini_batch_size, **kwargs)
    if fast:
        from benchmark.training.sampler import ClsMultipleNegativesRankingLoss

        return ClsMultipleNegativesRankingLoss(model, **kwargs)
    return MultipleNegativesRankingLoss(model, **kwargs)


def max_positions(source: str) -> int | None:
    """The checkpoint's position embeddings (None when its config does not say)."""
    from transformers import AutoConfig

    return getattr(AutoConfig.from_pretrained(source), "max_position_embeddings", None)



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


def train_stage(
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
    model = build_model(source, recipe, torch_device(device))
    dataset, cache = build_dataset(plan, data, recipe, config, model)
    trainer = _trainer(model, dataset, recipe, seed, work / f"stage{stage}", device, progress,
                       [*(validation or []), *(callbacks or [])], cache)
    resume = last_checkpoint(work / f"stage{stage}")
    if resume:
        log.warning("stage %d: resuming from %s", stage, resume)
        trainer.curve = load_curve(resume)
    output = train_with_oom_message(trainer, resume, recipe)
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    stats = {
        "steps": int(trainer.state.global_step),
        "final_loss": float(losses[-1]) if losses else None,
        "mean_loss": float(output.training_loss) if output is not None else None,
        "resumed_from": resume.name if resume else None,
        "curve": trainer.curve,
        "validation": [e for e in trainer.state.log_history if "validation_loss" in e],
    }
    if is_main_process():
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

    world = world_size()
    if recipe.queries_per_step % world:
        raise FinetuneError(
            f"queries_per_step {recipe.queries_per_step} does not divide over {world} processes; "
            "set --set queries_per_step to a multiple of the process count"
        )

    documents = {col: "document" for col in [POSITIVE_COLUMN, *negative_columns(recipe.group_size)]}
    use_cpu = (device or "").startswith("cpu") or not cuda_available()
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


def train_with_oom_message(trainer, resume: Path | None, recipe: Recipe):
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


def last_checkpoint(output_dir: Path) -> Path | None:
    """The newest committed checkpoint (benchmark.training.checkpoints): one a kill -9 tore
    during its save is removed, and training resumes from the one before."""
    from benchmark.training.checkpoints import newest_committed

    found = newest_committed(output_dir, "checkpoint")
    return found[0] if found else None


# --- environment ----------------------------------------------------------------------------


def library_versions() -> dict[str, str | None]:
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for package in ("torch", "transformers", "sentence-transformers", "accelerate", "datasets", "bm25s"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def torch_device(device: str | None) -> str | None:
    if device and device.startswith("cuda") and not cuda_available():
        raise ModelLoadError(f"--device {device}: CUDA is not available here")
    return device

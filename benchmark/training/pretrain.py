"""`maebench pretrain`: one objective, one init card, one corpus, one budget -> a new card.

Built on accelerate (mixed precision, gradient accumulation, multi-GPU via `accelerate launch`,
resumable state). On a CPU a long run of a batch-separable objective trains in one
single-threaded process per core, each taking its share of every step (training.processes:
~1.5x the tokens per CPU-second of one two-threaded process at the lab's shapes). Every batch is
a pure function of (seed, step, process) (see training.corpus), so a resumed run continues
exactly where a killed one stopped. Only the encoder is saved, as a plain AutoModel folder +
tokenizer under checkpoints_dir()/<name>; the card (pointing at `home:checkpoints/<name>`) is
written last, atomically, so a card always means finished weights.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.catalog.registry import ModelCard
from benchmark.core.errors import MaebenchError, ModelLoadError, RegistryError
from benchmark.core.paths import checkpoints_dir, models_dir
from benchmark.training.checkpoints import (
    clear_folder,
    commit_checkpoint,
    load_training_state,
    newest_committed,
    open_staging,
    prune_checkpoints,
    publish_folder,
    resume_meta,
)
from benchmark.training.pretrain_recipe import (
    PretrainRecipe,
    apply_overrides,
    load_recipe,
    resolve_steps,
    tokens_per_step,
    warmup_for,
)

# the module's name also where a worker runs it as __main__ (python -m), so its step lines
# stay under benchmark.training, where progress_log shows them
log = logging.getLogger(__spec__.name if __spec__ else __name__)
LOSS_WINDOW = 10  # loss_start / loss_end are means over this many first / last steps


@dataclass
class PretrainOptions:
    objective: str
    corpus: str
    budget: str
    name: str
    seed: int = 0
    recipe_path: Path | None = None
    overrides: dict[str, str] = field(default_factory=dict)
    data_dir: Path | None = None
    device: str | None = None
    precision: str | None = None
    accumulation: int = 1
    resume: bool = False
    overwrite: bool = False
    models_dir: Path | None = None
    generator: str | None = None
    log_every: int = 10
    save_every: int | None = None
    # share of the corpus's documents never trained on; their spans measure held-out loss terms
    # at `evaluations` evenly spaced steps (the studies' gates read them; 0 = no held-out data)
    holdout: float = 0.0
    evaluations: int = 10
    # data-parallel CPU processes (training.processes); None = one per core for a long run of a
    # batch-separable objective, else 1. A resumed run keeps the count it was started with.
    processes: int | None = None
    # most positions one forward pass takes: a process's share of a step is cut into micro-batches
    # of at most this many, their gradients summed before the one optimizer step
    # (training.processes.micro_batches); None = CPU_MICRO_POSITIONS on a CPU, whole on a GPU
    micro_batch_positions: int | None = None


def options_to_payload(init: ModelCard, options: PretrainOptions) -> dict[str, Any]:
    """What a data-parallel worker needs to rebuild this run: the init card and the options."""
    from dataclasses import asdict

    fields = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()}
    return {"init": init.model_dump(mode="json"), "options": fields}


def options_from_payload(payload: dict[str, Any]) -> tuple[ModelCard, PretrainOptions]:
    from benchmark.core.validation import validate

    init = validate(payload["init"], ModelCard, "init card", RegistryError)
    fields = dict(payload["options"])
    for key in ("recipe_path", "data_dir", "models_dir"):
        if fields.get(key) is not None:
            fields[key] = Path(fields[key])
    return init, PretrainOptions(**fields)


def checkpoint_source(checkpoint: str, local_package: str | None,
                      revision: str | None = None) -> tuple[str, str]:
    """Where from_pretrained should read a card's checkpoint: catalog.weights' resolution
    (home:checkpoints/<name> with its sha256 revision checked, local copies, packages, hub)."""
    from benchmark.catalog.weights import resolve_checkpoint

    return resolve_checkpoint(checkpoint, local_package, revision)


def load_init(card: ModelCard):
    """(encoder AutoModel, MLM head tied to its input embeddings, tokenizer, notes)."""
    encoder, head, tokenizer, notes, _ = load_init_parts(card)
    return encoder, head, tokenizer, notes


def load_init_parts(card: ModelCard):
    """load_init plus whether the MLM head came trained from the checkpoint (False: initialised
    fresh here, so the run warms it up with the encoder frozen first)."""
    retriever = card.retriever
    if retriever.kind != "dense" or retriever.encoder != "shared" or not retriever.checkpoint:
        raise RegistryError(
            f"init card '{card.name}' must be a dense card with one shared encoder and weights "
            f"(it is {retriever.kind}" + (f"/{retriever.encoder}" if retriever.kind == "dense" else "")
            + ")"
        )
    source, origin = checkpoint_source(retriever.checkpoint, retriever.local_package,
                                       retriever.revision)
    revision = retriever.revision if origin == "hub" else None
    from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the missing MLM head is expected and reported below
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, revision=revision)
        encoder = AutoModel.from_pretrained(source, revision=revision)
        masked_lm, info = AutoModelForMaskedLM.from_pretrained(
            source, revision=revision, output_loading_info=True
        )
    except (OSError, ValueError) as exc:
        from benchmark.catalog.weights import load_failure

        raise load_failure(retriever.checkpoint, retriever.revision, exc) from exc
    finally:
        hf_logging.set_verbosity(previous)
    prefix = masked_lm.base_model_prefix
    heads = [m for n, m in masked_lm.named_children() if n != prefix]
    if len(heads) != 1:
        raise ModelLoadError(f"cannot find the MLM head of {type(masked_lm).__name__}")
    head = heads[0]
    masked_lm.get_output_embeddings().weight = encoder.get_input_embeddings().weight
    missing = [k for k in info.get("missing_keys", []) if not k.startswith(prefix + ".")]
    notes = [f"init weights from {origin}"]
    if missing:
        notes.append(
            "the init checkpoint has no MLM head: its transform was initialised fresh (BERT init) "
            "and its decoder tied to the input embeddings (bias zero)"
        )
    else:
        notes.append("MLM head loaded from the init checkpoint, decoder tied to the input embeddings")
    return encoder, head, tokenizer, notes, not missing


def _params(recipe: PretrainRecipe, generator: str | None) -> dict[str, Any]:
    params = recipe.model_dump(exclude={"sources", "published_schedule", "notes"})
    if generator:
        params["generator"] = generator
    return params


DEFAULT_HEAD_WARMUP = 200  # the audit's proposal (../shared/reference/mae-study-audit.md, 3.4)


def head_warmup_steps(recipe: PretrainRecipe, steps: int, has_head: bool) -> int:
    """Steps that train a fresh MLM head (and the objective's new decoders) with the encoder
    frozen before the run: an untrained head passes noise into the encoder for the whole of a
    short run (the audit measured an MLM loss above uniform after 64 joint steps). Default: none
    when the head came trained, else min(200, the run's steps); the recipe's head_warmup_steps
    (--set) decides when given."""
    if recipe.head_warmup_steps is not None:
        return recipe.head_warmup_steps
    return 0 if has_head else min(DEFAULT_HEAD_WARMUP, steps)


def _pick_precision(requested: str | None, recipe: PretrainRecipe, device: str) -> str:
    if requested:
        return requested
    return recipe.precision if device.startswith("cuda") else "no"


def _grouped_parameters(model, weight_decay: float) -> list[dict]:
    """No decay on biases and LayerNorm weights, as transformers' Trainer."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if name.endswith("bias") or "LayerNorm" in name or "norm" in name.split(".")[-2:][0]
         else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _processes(options: PretrainOptions, recipe: PretrainRecipe, steps: int) -> int:
    """How many data-parallel processes this run trains in (training.processes). A resumed run
    keeps the count its saved state was started with: each process's share of a step is part of
    the data order, so another count would continue a different run."""
    from benchmark.core.devices import pick_device
    from benchmark.training.objectives import objective_class
    from benchmark.training.processes import resolve_processes

    requested = options.processes
    if requested is None and options.resume:
        progress = checkpoints_dir() / f".{options.name}.partial" / "progress.json"
        try:
            saved = json.loads(progress.read_text()).get("processes") if progress.is_file() else None
        except (OSError, ValueError, AttributeError):
            saved = None  # the trainer's own resume reports a damaged state
        requested = saved if isinstance(saved, int) and not isinstance(saved, bool) else None
    device = pick_device(options.device)
    positions = steps * options.accumulation * recipe.batch_size * recipe.max_length
    count, why = resolve_processes(requested, device, objective_class(options.objective).batch_separable,
                                   positions)
    log.info("%s: %d training process%s (%s)", options.name, count, "" if count == 1 else "es", why)
    return count


def _target_free(name: str, cards: Path, overwrite: bool) -> None:
    from benchmark.core.paths import check_name

    check_name(name, "--name")
    if (cards / f"{name}.yaml").exists() and not overwrite:
        raise MaebenchError(f"card {cards / (name + '.yaml')} exists; pass --overwrite to replace it")


def pretrain_card(init: ModelCard, options: PretrainOptions) -> Path:
    """Pre-train, save the encoder, write the card; returns the card's path."""
    from dataclasses import replace

    from benchmark.training.corpus import (
        PackedPairStream,
        PairStream,
        build_pairs,
        read_texts,
        resolve_corpus,
        split_heldout,
    )
    from benchmark.training.objectives import check_objective
    from benchmark.training.processes import in_worker, launch_workers

    given = options.objective  # what the workers load: a plugin's path as given
    # the name a card records: a file plugin as `file.py:Class`, whatever path it was given by
    options = replace(options, objective=check_objective(options.objective))
    recipe = apply_overrides(load_recipe(options.objective, options.recipe_path), options.overrides)
    if recipe.batch_size % 2:
        raise MaebenchError(f"batch_size {recipe.batch_size} must be even (spans come in pairs)")
    steps = resolve_steps(options.budget, recipe, options.accumulation)
    cards = options.models_dir or models_dir()
    _target_free(options.name, cards, options.overwrite)
    if not in_worker():
        processes = _processes(options, recipe, steps)
        if processes > 1:
            resolve_corpus(options.corpus, options.data_dir)  # a bad corpus: one line, no workers
            # the workers run this module (worker_main below): named by __name__, not spelled
            launch_workers(options_to_payload(
                init, replace(options, objective=given, processes=processes)), processes, __name__)
            return cards / f"{options.name}.yaml"
    from accelerate.utils import set_seed

    set_seed(options.seed)  # a head missing from the init checkpoint is initialised from this seed
    encoder, head, tokenizer, notes, has_head = load_init_parts(init)
    warmup = head_warmup_steps(recipe, steps, has_head)
    if not has_head:
        log.warning("init card '%s' has no MLM head: a new one is trained for %d steps with the encoder "
                    "frozen before the run (--set head_warmup_steps=N to change)", init.name, warmup)
        notes.append(f"head warm-up: {warmup} steps with the encoder frozen, at the recipe's learning "
                     "rate, on span batches after the run's own stream (the run's data is unchanged)")
    source = resolve_corpus(options.corpus, options.data_dir)
    texts, heldout_texts = split_heldout(read_texts(source), options.holdout)
    pairs = build_pairs(texts, tokenizer, recipe.max_length, balanced=recipe.packing)
    heldout = (build_pairs(heldout_texts, tokenizer, recipe.max_length, balanced=recipe.packing)
               if heldout_texts else [])
    if options.holdout:
        notes.append(f"held out: {len(heldout_texts)} of {len(texts) + len(heldout_texts)} documents "
                     f"(sha256 of the text, share {options.holdout}), never trained on; loss terms on "
                     f"{len(heldout)} of their span pairs at {options.evaluations + 1} evenly spaced steps")
    stream = PackedPairStream if recipe.packing else PairStream
    trainer = _Trainer(options, recipe, steps, pairs, encoder, head, tokenizer, stream, warmup,
                       heldout)
    result = trainer.run()
    trainer.accelerator.wait_for_everyone()
    if not trainer.accelerator.is_main_process:  # `accelerate launch`: one writer
        return cards / f"{options.name}.yaml"
    notes += trainer.objective.head_notes
    folder = _publish_weights(trainer, options)
    card = _card(init, options, recipe, steps, source, result, folder, notes, len(pairs))
    return write_card(card, cards, options.overwrite)


class _Trainer:
    def __init__(self, options, recipe, steps, pairs, encoder, head, tokenizer, stream_cls,
                 head_warmup: int = 0, heldout: list | None = None) -> None:
        import torch
        from accelerate import Accelerator
        from accelerate.utils import DataLoaderConfiguration, DistributedDataParallelKwargs, set_seed
        from transformers import get_scheduler

        from benchmark.core.devices import pick_device
        from benchmark.training.corpus import PackedPairStream
        from benchmark.training.objectives import objective_class
        from benchmark.training.processes import micro_batches, world_size

        self.options, self.recipe, self.steps = options, recipe, steps
        self.device = pick_device(options.device)
        self.precision = _pick_precision(options.precision, recipe, self.device)
        world = world_size()
        packed = issubclass(stream_cls, PackedPairStream)
        # a process's share of a step in micro-batches (packed batches only: a span count
        # cannot be cut evenly); the optimizer still steps once per step
        self.micro = (micro_batches(options.micro_batch_positions, self.device,
                                    recipe.batch_size * recipe.max_length // world, recipe.max_length)
                      if packed else 1)
        self.accumulation = options.accumulation * self.micro
        # with several processes (one process is not wrapped): find_unused_parameters because the
        # head warm-up freezes the encoder inside the wrapped model; split_batches because the
        # processes share one step's batch, so the schedule advances once per step (accelerate
        # otherwise steps it once per process, as if each had drawn a batch of its own)
        self.accelerator = Accelerator(
            mixed_precision=self.precision, gradient_accumulation_steps=self.accumulation,
            cpu=self.device == "cpu",
            kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
            dataloader_config=DataLoaderConfiguration(split_batches=True),
        )
        # each process its own dropout stream (process 0's is the single-process run's); the
        # weights start equal in every process: DDP broadcasts process 0's
        set_seed(options.seed, device_specific=True)
        self.params = _params(recipe, options.generator)
        self.objective = objective_class(options.objective)(encoder, head, tokenizer, self.params)
        self.warmup = warmup_for(recipe, steps)
        # fused: one kernel per parameter group instead of ~10 per tensor (the for-loop AdamW's
        # lerp/addcmul/sqrt/div calls were ~6% of a CPU step in a profile of the study's shape)
        optimizer = torch.optim.AdamW(
            _grouped_parameters(self.objective, recipe.weight_decay), lr=recipe.learning_rate,
            fused=self.device == "cpu" or self.device.startswith("cuda"),
        )
        name = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}[recipe.scheduler]
        scheduler = get_scheduler(name, optimizer, num_warmup_steps=self.warmup, num_training_steps=steps)
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(
            self.objective, optimizer, scheduler
        )
        if world != self.accelerator.num_processes:
            raise MaebenchError(f"WORLD_SIZE says {world} processes, accelerate sees "
                                f"{self.accelerator.num_processes}")
        if packed:  # a budget of positions per process and micro-batch
            self.stream = stream_cls(pairs, recipe.batch_size * recipe.max_length // (world * self.micro),
                                     options.seed)
        else:
            self.stream = stream_cls(pairs, recipe.batch_size // 2 // world, options.seed)
        self.heldout = heldout or []
        self.staging = checkpoints_dir() / f".{options.name}.partial"
        self.tokenizer = tokenizer
        self.head_warmup = head_warmup
        self.trainable = sum(p.numel() for p in self.objective.parameters())
        self.world = world

    def _sum_over_processes(self, values: list[float]) -> list[float]:
        """Element-wise sums over the data-parallel processes (the values themselves in one)."""
        if self.world == 1:
            return values
        import torch

        tensor = torch.tensor(values, dtype=torch.float64)
        torch.distributed.all_reduce(tensor)
        return tensor.tolist()

    def _start(self) -> dict:
        progress = self.staging / "progress.json"
        # never a link; no pruning without --resume. The newest committed state
        # (benchmark.training.checkpoints): one torn by a kill -9 during its save is removed and
        # the one before is used. One process checks, clears (--overwrite) and removes in the
        # folder they all write into; the others then read what it left
        main = self.accelerator.is_main_process
        if main:
            open_staging(self.staging, "state", resume=self.options.resume,
                         overwrite=self.options.overwrite, name=self.options.name)
            found = newest_committed(self.staging, "state")
        self.accelerator.wait_for_everyone()
        if not main:
            found = newest_committed(self.staging, "state")
        if progress.is_file() or found is not None:
            if not self.options.resume:
                raise MaebenchError(
                    f"an unfinished pre-training of '{self.options.name}' exists in {self.staging}; "
                    "pass --resume to continue it or --overwrite to start again"
                )
            state = resume_meta(found, self.steps)  # validated: types, done <= steps
            if not isinstance(state, dict):
                log.warning("%s holds no complete saved state; starting from step 0", self.staging)
            else:
                if (state.get("steps") != self.steps or state.get("objective") != self.options.objective
                        or state.get("head_warmup", 0) != self.head_warmup):
                    raise MaebenchError(f"{self.staging} was started with other settings; pass --overwrite")
                if state.get("micro_batches", 1) != self.micro:
                    raise MaebenchError(
                        f"{self.staging} was started with {state.get('micro_batches', 1)} micro-batch(es) "
                        f"per step and process, this run has {self.micro}: they are part of the data "
                        "order; pass the --micro-batch-positions it was started with (or --overwrite)")
                if state.get("processes", 1) != self.world:
                    raise MaebenchError(
                        f"{self.staging} was started in {state.get('processes', 1)} training "
                        f"process(es), this run has {self.world}: each process's share of a step is "
                        f"part of the data order; pass --processes {state.get('processes', 1)} "
                        "(or --overwrite to start again)")
                load_training_state(self.accelerator, found[0])  # an RNG state not applied: error
                return state
        self.staging.mkdir(parents=True, exist_ok=True)
        return {"objective": self.options.objective, "steps": self.steps, "done": 0, "losses": [],
                "parts": [], "lrs": [], "heldout": [], "tokens": 0, "positions": 0,
                "wall_s": 0.0, "cpu_s": 0.0, "processes": self.world, "micro_batches": self.micro,
                "head_warmup": self.head_warmup, "head_warmup_done": self.head_warmup == 0,
                "head_warmup_losses": []}

    def _save(self, state: dict) -> None:
        """A new state folder per save, committed (its files fsynced and recorded with their
        sha256) before progress.json names it; the previous committed folder is kept, so a kill
        -9 at any moment, or a damaged last state, leaves a complete state to resume from."""
        from benchmark.core.files import atomic_write

        folder = f"state-{state['done']}"
        if self.accelerator.is_main_process:  # a torn earlier try at this step: one process
            shutil.rmtree(self.staging / folder, ignore_errors=True)  # removes it, then all write
        self.accelerator.wait_for_everyone()
        self.accelerator.save_state(str(self.staging / folder))
        state["state"] = folder
        self.accelerator.wait_for_everyone()  # every process has written its files
        if self.accelerator.is_main_process:
            commit_checkpoint(self.staging / folder, state)  # the commit point of this save
            atomic_write(self.staging / "progress.json", json.dumps(state).encode())
            prune_checkpoints(self.staging, "state", keep=2)  # the previous one stays, as a fallback
        self.accelerator.wait_for_everyone()

    def _warm_up_head(self, state: dict) -> None:
        """Train everything but the encoder (the new MLM head, the objective's decoders) for
        `head_warmup` steps, then save: a kill during it redoes it from the start, which the
        seeded batches make identical. Its batches come after the run's own stream, so the run
        sees the same data as an arm without warm-up; its tokens are counted apart."""
        import numpy as np
        import torch

        from benchmark.training.objectives import checked_corrupt, checked_forward

        if state.get("head_warmup_done", True):
            return
        unwrapped = self.accelerator.unwrap_model(self.model)
        frozen = list(unwrapped.encoder.parameters())
        frozen_ids = {id(p) for p in frozen}
        params = [p for p in unwrapped.parameters() if id(p) not in frozen_ids]
        for param in frozen:
            param.requires_grad_(False)
        optimizer = torch.optim.AdamW(params, lr=self.recipe.learning_rate,
                                      weight_decay=self.recipe.weight_decay)
        offset = self.steps * self.accumulation
        self.model.train()
        try:
            rank = self.accelerator.process_index
            for step in range(self.head_warmup):
                # as _batch: each process its own share of the step, in its micro-batches (one
                # process, one micro-batch: the seeds and batches of before)
                loss = 0.0
                for micro in range(self.micro):
                    seed = [self.options.seed, 13, step] + ([rank, micro] if rank or micro else [])
                    chosen = self.stream.batch(((offset + step * self.micro + micro) * self.world) + rank)
                    batch = checked_corrupt(unwrapped, chosen, np.random.default_rng(seed))
                    batch = {k: v.to(self.accelerator.device) for k, v in batch.items()}
                    part, _ = checked_forward(self.model, batch)  # a plug-in's bug or NaN: one line
                    (part / self.micro).backward()
                    loss = loss + part.detach() / self.micro
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                optimizer.zero_grad()
                state["head_warmup_losses"].append(round(float(loss.detach()), 6))
                if (step + 1) % self.options.log_every == 0 or step == 0:
                    log.info("%s head warm-up %d/%d loss %.4f", self.options.name, step + 1,
                             self.head_warmup, float(loss.detach()))
        finally:
            for param in frozen:
                param.requires_grad_(True)
        state["head_warmup_done"] = True
        self._save(state)

    def _batch(self, index: int):
        """Step `index`'s corrupted batch (a pure function of seed and index; runs in the
        prefetch thread while the previous step computes: torch releases the GIL)."""
        import numpy as np

        from benchmark.training.objectives import checked_corrupt

        rng = np.random.default_rng([self.options.seed, 11, index, self.accelerator.process_index])
        # each process takes its own slice of the stream (same data as one process)
        world = self.accelerator.num_processes
        return checked_corrupt(self.accelerator.unwrap_model(self.model),
                               self.stream.batch(index * world + self.accelerator.process_index), rng)

    def evaluate_heldout(self) -> dict[str, float]:
        """Mean loss terms on the held-out spans: eval mode (no dropout), the same masks at every
        evaluation (fixed seeds), no gradient, so evaluations differ only by the weights. Batches
        as training packs them, over all held-out pairs up to HELDOUT_PAIRS."""
        import numpy as np
        import torch

        from benchmark.training.corpus import PackedPairStream
        from benchmark.training.objectives import checked_corrupt, checked_forward

        unwrapped = self.accelerator.unwrap_model(self.model)
        pairs = self.heldout[:HELDOUT_PAIRS]
        stream = PackedPairStream(pairs, self.recipe.batch_size * self.recipe.max_length, 0)
        batches, covered = [], 0
        while covered < len(pairs):  # one pass: the stream's first epoch
            batches.append(stream.batch(len(batches)))
            covered += len(batches[-1])
        sums: dict[str, float] = {}
        was_training = unwrapped.training
        unwrapped.eval()
        try:
            with torch.no_grad():
                # the same batches and masks in any number of processes, dealt out in turn
                for step in range(self.accelerator.process_index, len(batches), self.world):
                    chosen = batches[step]
                    batch = checked_corrupt(unwrapped, chosen, np.random.default_rng([17, step]))
                    batch = {k: v.to(self.accelerator.device) for k, v in batch.items()}
                    loss, parts = checked_forward(unwrapped, batch)
                    for key, value in {"loss": float(loss), **parts}.items():
                        sums[key] = sums.get(key, 0.0) + value * len(chosen)
        finally:
            unwrapped.train(was_training)
        if self.world > 1:  # every process's sums (a process may have had no batch)
            gathered: list[dict[str, float] | None] = [None] * self.world
            torch.distributed.all_gather_object(gathered, sums)
            sums = {}
            for part in gathered:
                for key, value in (part or {}).items():
                    sums[key] = sums.get(key, 0.0) + value
        return {k: round(v / covered, 6) for k, v in sums.items()}

    def _evaluation_steps(self) -> set[int]:
        """Steps after which the held-out terms are measured: 0 (before training), the end, and
        `evaluations - 1` evenly spaced steps between."""
        if not self.heldout:
            return set()
        count = max(1, self.options.evaluations)
        return {round(k * self.steps / count) for k in range(count + 1)}

    def run(self) -> dict:
        from concurrent.futures import ThreadPoolExecutor

        from benchmark.training.objectives import checked_forward

        state = self._start()
        state.setdefault("lrs", [])
        state.setdefault("heldout", [])
        state.setdefault("positions", 0)
        cpu_before, began_cpu = state.get("cpu_s", 0.0), time.process_time()
        self._warm_up_head(state)
        accumulation = self.accumulation  # micro-batches per optimizer step
        save_every = self.options.save_every or max(25, self.steps // 10)
        unwrapped = self.accelerator.unwrap_model(self.model)
        evaluate_at = self._evaluation_steps()
        measured = {entry["step"] for entry in state["heldout"]}
        if 0 in evaluate_at and 0 not in measured and state["done"] == 0:
            state["heldout"].append({"step": 0, "terms": self.evaluate_heldout()})
        self.model.train()
        began = time.monotonic() - state["wall_s"]
        indices = [step * accumulation + micro for step in range(state["done"], self.steps)
                   for micro in range(accumulation)]
        # the next batch is masked while this one trains (the objectives' corrupt is numpy and
        # Python: RetroMAE's 256 decoder masks per span cost ~3% of a step)
        with ThreadPoolExecutor(max_workers=1) as prefetch:
            upcoming = prefetch.submit(self._batch, indices[0]) if indices else None
            position = 0
            for step in range(state["done"], self.steps):
                unwrapped.progress = step / self.steps
                step_loss, parts, real, positions = 0.0, {}, 0, 0
                state["lrs"].append(float(self.scheduler.get_last_lr()[0]))
                for _micro in range(accumulation):
                    batch = upcoming.result()
                    position += 1
                    upcoming = (prefetch.submit(self._batch, indices[position])
                                if position < len(indices) else None)
                    real += int(batch["attention_mask"].sum())
                    positions += int(batch["attention_mask"].numel())
                    batch = {k: v.to(self.accelerator.device) for k, v in batch.items()}
                    with self.accelerator.accumulate(self.model):
                        loss, terms = checked_forward(self.model, batch)  # non-finite: stops here
                        self.accelerator.backward(loss)
                        if self.accelerator.sync_gradients:
                            self.accelerator.clip_grad_norm_(self.model.parameters(), 1.0)
                        self.optimizer.step()
                        self.scheduler.step()
                        self.optimizer.zero_grad()
                    step_loss += float(loss.detach()) / accumulation
                    for key, value in terms.items():  # the step's terms: means over its batches
                        parts[key] = parts.get(key, 0.0) + value / accumulation
                # one exchange per step: every process's tokens, CPU time, loss and terms
                local_cpu = time.process_time() - began_cpu
                keys = sorted(parts)
                summed = self._sum_over_processes(
                    [real, positions, local_cpu, step_loss, *(parts[k] for k in keys)])
                state["tokens"] += int(summed[0])
                state["positions"] += int(summed[1])
                step_loss = summed[3] / self.world
                parts = {k: v / self.world for k, v in zip(keys, summed[4:], strict=True)}
                state["losses"].append(round(step_loss, 6))
                state["parts"].append({k: round(v, 6) for k, v in parts.items()})
                state["done"] = step + 1
                if step + 1 in evaluate_at:
                    state["heldout"].append({"step": step + 1, "terms": self.evaluate_heldout()})
                state["wall_s"] = time.monotonic() - began
                state["cpu_s"] = cpu_before + summed[2]  # all processes' CPU seconds
                if (step + 1) % self.options.log_every == 0 or step == 0:
                    log.info("%s step %d/%d loss %.4f (%.1fs)", self.options.name, step + 1,
                             self.steps, step_loss, state["wall_s"])
                if (step + 1) % save_every == 0 and step + 1 < self.steps:
                    self._save(state)
        self.state = dict(state, precision=self.precision, trainable=self.trainable)
        return self.state


HELDOUT_PAIRS = 256  # held-out span pairs per evaluation: ~4 steps' worth of an arm's batch


def masked_lm_with(encoder, head):
    """A *ForMaskedLM model whose base is `encoder` and whose MLM head is `head` (the tensors
    themselves, not copies), so one save_pretrained writes both, as the papers' code saves
    `lm.save_pretrained` with BertForMaskedLM: a later stage continues head included, and
    AutoModel still loads the encoder part."""
    from transformers import AutoModelForMaskedLM

    masked_lm = AutoModelForMaskedLM.from_config(encoder.config)
    prefix = masked_lm.base_model_prefix
    heads = [n for n, _ in masked_lm.named_children() if n != prefix]
    if len(heads) != 1:
        raise ModelLoadError(f"cannot find the MLM head of {type(masked_lm).__name__}")
    setattr(masked_lm, prefix, encoder)
    setattr(masked_lm, heads[0], head)
    masked_lm.config.architectures = [type(masked_lm).__name__]
    return masked_lm


def _publish_weights(trainer: _Trainer, options: PretrainOptions) -> Path:
    """Save the encoder + MLM head + tokenizer into the staging folder, then rename into place."""
    from benchmark.core.files import atomic_write

    staged = trainer.staging / "encoder"
    clear_folder(staged)  # a link as a link
    objective = trainer.accelerator.unwrap_model(trainer.model)
    masked_lm_with(objective.encoder, objective.head).save_pretrained(staged)
    trainer.tokenizer.save_pretrained(staged)
    log_data = {"losses": trainer.state["losses"], "parts": trainer.state["parts"],
                "lrs": trainer.state.get("lrs", []), "heldout": trainer.state.get("heldout", []),
                "tokens": trainer.state["tokens"], "positions": trainer.state.get("positions"),
                "head_warmup_losses": trainer.state.get("head_warmup_losses", []),
                "objective": options.objective, "seed": options.seed}
    atomic_write(staged / "pretrain_log.json", json.dumps(log_data).encode())
    final = checkpoints_dir() / options.name
    # a finished run killed before its card was written left these: --resume replaces them
    publish_folder(staged, final, replace=options.overwrite or options.resume)
    shutil.rmtree(trainer.staging, ignore_errors=True)
    return final


def weights_sha256(folder: Path) -> str:
    import hashlib

    from benchmark.core.files import sha256_file

    files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    digest = hashlib.sha256()
    for path in files:
        digest.update(sha256_file(path).encode())
    return digest.hexdigest() if len(files) != 1 else sha256_file(files[0])


def encoding_after_pretraining(folder: Path, init: ModelCard) -> dict[str, Any]:
    """[CLS] pooling and dot product (what the objectives train: the init's pooling, e.g. MiniLM's
    mean + cosine, would evaluate a vector nobody trained); BEIR lengths, query 64 / passage 256,
    within the model's positions."""
    from transformers import AutoConfig

    positions = getattr(AutoConfig.from_pretrained(folder), "max_position_embeddings", 512) or 512
    return {"pooling": "cls", "normalize": False, "similarity": "dot",
            "query_max_length": min(64, positions), "passage_max_length": min(256, positions)}


def _card(init, options, recipe, steps, source, result, folder, notes, n_pairs) -> ModelCard:
    from benchmark.core.provenance import provenance_fields

    prov = provenance_fields()
    losses = result["losses"]
    window = min(LOSS_WINDOW, len(losses))
    resolved = {k: v for k, v in recipe.model_dump(
        exclude={"sources", "published_schedule", "notes", "objective"}).items() if v is not None}
    resolved.update(precision=result["precision"], steps=steps, warmup_steps=warmup_for(recipe, steps),
                    accumulation=options.accumulation,
                    tokens_per_step=tokens_per_step(recipe, options.accumulation),
                    budget=options.budget, n_span_pairs=n_pairs,
                    processes=result.get("processes", 1), micro_batches=result.get("micro_batches", 1))
    retriever = init.retriever.model_dump(mode="json")
    digest = weights_sha256(folder)
    # revision sha256:<digest>: the loader (catalog.weights) checks the weights against it
    retriever.update(checkpoint=f"home:checkpoints/{options.name}", revision=f"sha256:{digest}",
                     local_package=None, head=[], **encoding_after_pretraining(folder, init))
    pretraining = {
        "objective": options.objective,
        "encoder_mask_ratio": recipe.encoder_mask,
        "decoder_mask_ratio": recipe.decoder_mask,
        "decoder_layers": recipe.decoder_layers if options.objective not in ("mlm", "bowpred") else 0,
        "corpus": source.label,
        "initialised_from": init.name,
        "corpus_fingerprint": source.fingerprint(),
        "seed": options.seed,
        "steps": steps,
        "tokens_seen": result["tokens"],
        "loss_start": round(sum(losses[:window]) / window, 6),
        "loss_end": round(sum(losses[-window:]) / window, 6),
        "weights_sha256": digest,
        "wall_time_s": round(result["wall_s"], 1),
        "hardware": prov["hardware"],
        "versions": prov["versions"],
        "recipe": resolved,
        "recipe_sources": recipe.sources,
        "notes": "; ".join(notes) + f"; loss_start/loss_end are means over the first/last {window} steps"
                 + "; flops = 6 x trainable parameters (encoder, head, decoders) x tokens seen",
        "mlm_head": True,
        "head_warmup_steps": result.get("head_warmup", 0),
        "cpu_time_s": round(result.get("cpu_s", 0.0), 3),
        "flops": float(6 * result.get("trainable", 0) * result["tokens"]),
        "positions_seen": result.get("positions") or None,
        "heldout_start": (result.get("heldout") or [{}])[0].get("terms"),
        "heldout_end": (result.get("heldout") or [{}])[-1].get("terms"),
        "vocabulary_sha256": (init.pretraining.vocabulary_sha256 if init.pretraining else None),
        "architecture": (init.pretraining.architecture if init.pretraining else None),
    }
    card = {
        "name": options.name,
        "display_name": f"{init.display_name} + {options.objective} ({options.budget}, seed {options.seed})",
        "family": "mae",
        "description": (f"{init.display_name} further pre-trained with the {options.objective} objective "
                        f"on {source.label} by maebench pretrain; not fine-tuned."),
        "source": (f"maebench pretrain (init card {init.name}); [CLS] pooling and dot product, what "
                   "every objective trains; prefixes and title mode from the init card"),
        "license": init.license,
        "parameters": init.parameters,
        "embedding_dim": init.embedding_dim,
        "retriever": retriever,
        "pretraining": pretraining,
        "finetuning": {"stage": "none"},
    }
    from benchmark.core.validation import validate

    return validate(card, ModelCard, f"card {options.name}", RegistryError)


def write_card(card: ModelCard, cards: Path, overwrite: bool) -> Path:
    import yaml

    from benchmark.core.files import atomic_write

    target = cards / f"{card.name}.yaml"
    if target.exists() and not overwrite:
        raise MaebenchError(f"card {target} exists; pass --overwrite to replace it")
    cards.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(card.model_dump(mode="json", exclude_none=True), sort_keys=False,
                          allow_unicode=True, width=100)
    atomic_write(target, text.encode("utf-8"))
    return target


def worker_main() -> int:
    """One data-parallel worker (`python -m benchmark.training.pretrain`, started by
    training.processes.launch_workers): the init card and options from the launcher's payload,
    the same pretrain_card as one process runs; accelerate reads the group from the environment
    (MULTI_CPU over gloo). An error goes to the launcher as one line (processes.report_failure),
    not as a second copy of the same `error:` on the terminal."""
    import os

    from benchmark.training.finetune import passive_thread_wait

    passive_thread_wait()  # before torch loads (the launcher sets it too)
    from benchmark.core.progress import progress_log
    from benchmark.training.processes import PAYLOAD_ENV, report_failure

    try:
        import torch

        torch.set_num_threads(1)
        init, options = options_from_payload(json.loads(os.environ[PAYLOAD_ENV]))
        if os.environ.get("RANK", "0") == "0":  # process 0 speaks for the run
            with progress_log("benchmark.training"):
                pretrain_card(init, options)
        else:
            pretrain_card(init, options)
    except MaebenchError as exc:
        report_failure(str(exc))
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(worker_main())

"""`maebench finetune`: fine-tune a dense backbone card with a recipe; writes weights and a card."""

from __future__ import annotations

import contextlib
import shlex
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import typer

# the recipe's budget, as options of their own (each is a `--set` override, recorded as one)
BUDGET_OPTIONS = ("max_steps", "queries_per_step", "epochs", "warmup_steps")


def register(app: typer.Typer) -> None:
    @app.command()
    def finetune(
        model: str | None = typer.Option(None, "--model", "-m", help="Backbone card (dense, shared)."),
        task: str | None = typer.Option(
            None, "--task", "-t", help="Task with a train split, or titles:<task>[,<task>...]: the "
            "title -> text pairs of those tasks' corpora (no queries, no qrels; e.g. --task "
            "titles:scifact,nfcorpus --recipe scratch-titles)."),
        recipe: str = typer.Option("standard", help="Recipe name (see --list-recipes)."),
        seed: int = typer.Option(0, min=0, max=2**32 - 1,
                                 help="Seed for negatives sampling, data order and initialisation."),
        name: str | None = typer.Option(
            None, help="Name of the new card (default <model>-ft-<task>-<recipe>-s<seed>)."
        ),
        max_steps: int | None = typer.Option(
            None, min=0, help="Budget: stop after this many optimiser steps (0: the epochs decide)."
        ),
        queries_per_step: int | None = typer.Option(
            None, min=1, help="Budget: queries per optimiser step, all devices together."
        ),
        epochs: int | None = typer.Option(None, min=1, help="Budget: passes over the train queries."),
        warmup_steps: int | None = typer.Option(
            None, min=0, help="Learning-rate warm-up steps (0: the recipe's warmup_ratio decides)."
        ),
        set_: list[str] = typer.Option(
            [], "--set", help="Override a recipe value, e.g. --set lr=1e-5 (repeatable; validated)."
        ),
        data_dir: Path | None = typer.Option(
            None, help="Folder of BEIR datasets (<dir>/<task>/corpus.jsonl); env MAEBENCH_DATA_DIR."
        ),
        device: str | None = typer.Option(None, help="cpu or cuda (default: cuda if available)."),
        overwrite: bool = typer.Option(False, help="Replace an existing card/weights of that name."),
        list_recipes: bool = typer.Option(False, "--list-recipes", help="List the recipes and exit."),
        validation_queries: Path | None = typer.Option(
            None, help="File of train query ids (one a line) held out of training and evaluated "
                       "as the validation set (never test queries)."),
        validate_every: int | None = typer.Option(
            None, min=1, help="Steps between held-out evaluations (default: the recipe's save_steps)."),
    ) -> None:
        """Fine-tune MODEL on TASK's train split (or on title -> text pairs) with one recipe; weights go to
        $MAEBENCH_HOME/checkpoints/<name>, the card to models/<name>.yaml. Multi-GPU:
        `torchrun --nproc_per_node N -m benchmark.cli finetune ...`. A re-run resumes.

        The budget options (--max-steps, --queries-per-step, --epochs, --warmup-steps) are
        --set overrides of the recipe, recorded in the card like any other."""
        from benchmark.training.finetune import passive_thread_wait

        passive_thread_wait()  # before anything imports torch (see there)
        from benchmark.training.recipes import available_recipes, load_recipe, parse_overrides

        if list_recipes:
            for item in available_recipes():
                typer.echo(f"{item}\t{load_recipe(item).description}")
            return
        if not model or not task:
            from benchmark.core.errors import MaebenchError

            raise MaebenchError("maebench finetune needs --model and --task (or --list-recipes)")
        from benchmark.catalog.registry import get_card
        from benchmark.training.finetune import run_finetune

        overrides = parse_overrides(set_)
        budget = dict(zip(BUDGET_OPTIONS, (max_steps, queries_per_step, epochs, warmup_steps),
                          strict=True))
        for key, value in budget.items():
            if value is not None:
                if key in overrides and overrides[key] != str(value):
                    from benchmark.core.errors import MaebenchError

                    raise MaebenchError(f"--{key.replace('_', '-')} {value} and --set "
                                        f"{key}={overrides[key]} disagree; give one")
                overrides[key] = str(value)
        backbone = get_card(model)
        held_out = read_query_ids(validation_queries) if validation_queries else None
        with quiet_library_bars():
            result = run_finetune(
                backbone, task, recipe, seed, name, overrides, data_dir, device, overwrite,
                command=shlex.join(["maebench", *sys.argv[1:]]),
                callbacks=[TrainingProgress()], held_out=held_out, validate_every=validate_every,
            )
        if result.steps or result.final_loss is not None:
            loss = "" if result.final_loss is None else f"{result.final_loss:.4f}"
            typer.echo(f"{result.card_path}\tsteps {result.steps}\tfinal loss {loss}")
            typer.echo(f"weights: {result.weights_dir}", err=True)


def read_query_ids(path: Path) -> frozenset[str]:
    """Query ids, one a line (blank lines and `#` comments skipped), from a regular file read
    bounded (a FIFO or a device is refused, never opened)."""
    from benchmark.core.errors import MaebenchError

    try:
        if not path.is_file():
            raise MaebenchError(f"--validation-queries {path}: not a regular file")
        if path.stat().st_size > 64 << 20:
            raise MaebenchError(f"--validation-queries {path}: larger than 64 MiB")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MaebenchError(f"--validation-queries {path}: cannot read it ({exc})") from exc
    ids = frozenset(line.strip() for line in text.splitlines()
                    if line.strip() and not line.lstrip().startswith("#"))
    if not ids:
        raise MaebenchError(f"--validation-queries {path}: no query id in it")
    return ids


@contextlib.contextmanager
def quiet_library_bars() -> Iterator[None]:
    """One progress display for the whole run: the libraries' own bars (weights loading and
    saving, the trainer's tqdm bar and the raw dicts it prints on every log step) are turned off,
    and TrainingProgress prints a line per logged step instead. The trainer takes its progress
    callback from a module global (transformers.trainer.DEFAULT_PROGRESS_CALLBACK); a callback
    that does nothing goes there for the duration of the command, and everything is restored."""
    import transformers.trainer
    from transformers.trainer_callback import TrainerCallback
    from transformers.utils import logging as hf_logging

    class _NoBar(TrainerCallback):
        """Stands in for the trainer's tqdm bar: TrainingProgress reports instead."""

    restore: list = []
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    restore.append(lambda: hf_logging.enable_progress_bar() if bars else None)
    previous = transformers.trainer.DEFAULT_PROGRESS_CALLBACK
    transformers.trainer.DEFAULT_PROGRESS_CALLBACK = _NoBar
    restore.append(lambda: setattr(transformers.trainer, "DEFAULT_PROGRESS_CALLBACK", previous))
    with contextlib.suppress(ImportError):
        import functools

        import sentence_transformers.base.model_card as st_card

        widget_bar = st_card.tqdm  # "Computing widget examples", for a model card not written
        st_card.tqdm = functools.partial(widget_bar, disable=True)
        restore.append(lambda: setattr(st_card, "tqdm", widget_bar))
    with contextlib.suppress(ImportError):
        import datasets

        datasets.disable_progress_bars()
        restore.append(datasets.enable_progress_bars)
    try:
        yield
    finally:
        for undo in reversed(restore):
            undo()


def TrainingProgress():  # noqa: N802 - a class built lazily (transformers is imported late)
    """A line per logged step on stderr (step, loss, learning rate, queries/s, elapsed), a line
    at the start (steps, warm-up) and one at the end; warns when the warm-up is as long as the
    run (the learning rate would never reach the recipe's: a 1-step run trains at lr 0)."""
    from rich.console import Console
    from transformers import TrainerCallback

    class _Progress(TrainerCallback):
        def __init__(self) -> None:
            self.console = Console(stderr=True, soft_wrap=True, highlight=False)
            self.started = time.monotonic()

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.monotonic()
            total = state.max_steps
            warmup = args.get_warmup_steps(total) if total > 0 else 0
            self.console.print(f"training: {total} steps of {args.per_device_train_batch_size} "
                               f"queries per device, lr {args.learning_rate:g} after {warmup} "
                               f"warm-up step{'s' if warmup != 1 else ''}"
                               + (f", from step {state.global_step}" if state.global_step else ""))
            if total > 0 and warmup >= total:
                self.console.print(
                    f"[bold yellow]WARNING[/] the warm-up ({warmup} steps) is as long as the run "
                    f"({total} steps): the learning rate never reaches {args.learning_rate:g} "
                    "(step 1 trains at lr 0); lower it with --warmup-steps N or --set "
                    "warmup_ratio=0.1 (with --warmup-steps 0)")

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            elapsed = time.monotonic() - self.started
            if "loss" in logs:
                parts = [f"step {state.global_step}/{state.max_steps}", f"loss {logs['loss']:.4f}"]
                if "learning_rate" in logs:
                    parts.append(f"lr {float(logs['learning_rate']):.2e}")
                if "queries_per_s" in logs:
                    parts.append(f"{logs['queries_per_s']} queries/s")
                parts.append(f"{elapsed:.0f}s")
                self.console.print("  " + "  ".join(parts))
            elif "train_runtime" in logs:
                self.console.print(f"trained {state.global_step} steps in "
                                   f"{float(logs['train_runtime']):.0f}s, mean loss "
                                   f"{float(logs.get('train_loss', float('nan'))):.4f}")

    return _Progress()

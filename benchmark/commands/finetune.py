"""`maebench finetune`: fine-tune a dense backbone card with a recipe; writes weights and a card."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def finetune(
        model: str | None = typer.Option(None, "--model", "-m", help="Backbone card (dense, shared)."),
        task: str | None = typer.Option(None, "--task", "-t", help="Task with a train split."),
        recipe: str = typer.Option("standard", help="Recipe name (see --list-recipes)."),
        seed: int = typer.Option(0, min=0, max=2**32 - 1,
                                 help="Seed for negatives sampling, data order and initialisation."),
        name: str | None = typer.Option(
            None, help="Name of the new card (default <model>-ft-<task>-<recipe>-s<seed>)."
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
    ) -> None:
        """Fine-tune MODEL on TASK's train split with one recipe; weights go to
        $MAEBENCH_HOME/checkpoints/<name>, the card to models/<name>.yaml. Multi-GPU:
        `torchrun --nproc_per_node N -m benchmark.cli finetune ...`. A re-run resumes."""
        from benchmark.training.recipes import available_recipes, load_recipe, parse_overrides

        if list_recipes:
            for item in available_recipes():
                typer.echo(f"{item}\t{load_recipe(item).description}")
            return
        if not model or not task:
            from benchmark.errors import MaebenchError

            raise MaebenchError("maebench finetune needs --model and --task (or --list-recipes)")
        from benchmark.registry import get_card
        from benchmark.training.finetune import run_finetune

        backbone = get_card(model)
        result = run_finetune(
            backbone, task, recipe, seed, name, parse_overrides(set_), data_dir, device, overwrite,
            command=shlex.join(["maebench", *sys.argv[1:]]),
        )
        if result.steps or result.final_loss is not None:
            typer.echo(f"{result.card_path}\tsteps {result.steps}\tfinal loss {result.final_loss}")
            typer.echo(f"weights: {result.weights_dir}", err=True)

"""`maebench card new`: draft a model card from a checkpoint's own configuration."""

from __future__ import annotations

from pathlib import Path

import typer

card_app = typer.Typer(help="Model cards: draft one from a checkpoint.", no_args_is_help=True)


@card_app.command("new")
def new(
    checkpoint: str = typer.Argument(..., help="Checkpoint folder or hub id."),
    name: str = typer.Option(..., "--name", "-n", help="Card name (also its file name)."),
    family: str | None = typer.Option(None, help="mae, contrastive, sparse or supervised."),
    description: str | None = typer.Option(None, help="One or two sentences on the model."),
    out: Path | None = typer.Option(
        None, help="Where to write the card (default models/<name>.yaml; '-' for stdout)."
    ),
    force: bool = typer.Option(False, help="Replace an existing file."),
) -> None:
    """Write a card: each inferred field commented with its origin, unknown ones REQUIRED."""
    from benchmark.catalog.cardfree import card_yaml, count_parameters, infer
    from benchmark.core.errors import MaebenchError
    from benchmark.core.files import atomic_write
    from benchmark.core.paths import models_dir

    settings, st = infer(checkpoint, {})
    parameters = count_parameters(checkpoint, settings["encoder"].value)
    if parameters is not None:  # the CPU cost note of `maebench run` estimates from it
        settings["parameters"] = parameters
    text = card_yaml(checkpoint, name, settings, st, family, description)
    if out is not None and str(out) == "-":
        typer.echo(text, nl=False)
        return
    target = out or models_dir() / f"{name}.yaml"
    if target.exists() and not force:
        raise MaebenchError(f"{target} already exists; pass --force to replace it")
    atomic_write(target, text.encode("utf-8"))
    blanks = text.count("# REQUIRED (")
    typer.echo(str(target))
    typer.echo(
        f"{blanks} required field(s) to fill in" if blanks
        else "every required field was inferred; check them against the paper", err=True)


def register(app: typer.Typer) -> None:
    app.add_typer(card_app, name="card")

"""`maebench bundle`: a model's card and results as a submission bundle."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def bundle(
        model: str = typer.Option(..., "--model", "-m", help="Model name (card or card-free run)."),
        task: str | None = typer.Option(None, "--task", "-t", help="Tasks (default: all stored)."),
        out: Path = typer.Option(..., help="New (or empty) folder to write the bundle into."),
        results_dir: Path | None = typer.Option(None, help="Results database (default results/)."),
        models_dir: Path | None = typer.Option(None, help="Model registry (default models/)."),
    ) -> None:
        """Write a submission bundle; check it with `maebench submit --check OUT`."""
        from benchmark.core.paths import models_dir as default_models_dir
        from benchmark.core.paths import refuse_owned_output
        from benchmark.core.paths import results_dir as default_results_dir
        from benchmark.submission.bundle import write_bundle

        # never into the results database or the registry: a stale copy there shadows newer results
        refuse_owned_output(out, also=(("results database", results_dir), ("models folder", models_dir)))
        tasks = [t.strip() for t in task.split(",") if t.strip()] if task else None
        written = write_bundle(model, tasks, results_dir or default_results_dir(),
                               models_dir or default_models_dir(), out)
        for path in written:
            typer.echo(str(path))
        typer.echo(f"next: maebench submit --check {out}  (then open a pull request adding it)",
                   err=True)

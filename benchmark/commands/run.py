"""`maebench run`: evaluate registered retrievers on catalog tasks and store the results."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def run(
        model: str = typer.Option("bm25", "--model", "-m", help="Registry name(s), comma-separated."),
        task: str = typer.Option("tiny", "--task", "-t", help="Task name(s), comma-separated."),
        data_dir: Path | None = typer.Option(
            None, help="Folder of BEIR datasets (<dir>/<task>/corpus.jsonl); env MAEBENCH_DATA_DIR."
        ),
        results_dir: Path | None = typer.Option(None, help="Results database (default results/)."),
        overwrite: bool = typer.Option(False, help="Replace an existing result."),
        device: str | None = typer.Option(None, help="torch device (default: cuda if available)."),
        top_k: int = typer.Option(
            1000, min=1000, help="Ranking depth used for evaluation (at least R@1000's cutoff)."
        ),
    ) -> None:
        """Evaluate MODEL on TASK (defaults: BM25 on the embedded tiny task) and store the result."""
        from rich.console import Console

        from benchmark.paths import results_dir as default_results_dir
        from benchmark.registry import get_card
        from benchmark.results import read_result
        from benchmark.runner import RunOptions, run_task
        from benchmark.tasks import get_task

        console = Console(stderr=True)
        cards = [get_card(name.strip()) for name in model.split(",") if name.strip()]
        tasks = [get_task(name.strip()) for name in task.split(",") if name.strip()]
        options = RunOptions(
            results_dir=results_dir or default_results_dir(),
            data_dir=data_dir,
            overwrite=overwrite,
            device=device,
            top_k=top_k,
            command=shlex.join(["maebench", *sys.argv[1:]]),
        )
        for card in cards:
            for spec in tasks:
                console.print(f"[bold]{card.name}[/] on [bold]{spec.name}[/] ...")
                path = run_task(card, spec, options)
                result = read_result(path)
                metrics = "  ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
                typer.echo(f"{card.name}\t{spec.name}\t{metrics}")
                timings = ", ".join(f"{k} {v:.1f}s" for k, v in result.provenance.timings.items())
                console.print(f"  stored {path}  ({timings})")

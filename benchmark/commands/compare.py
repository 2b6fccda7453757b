"""`maebench compare`: paired significance tests between stored results."""

from __future__ import annotations

from pathlib import Path

import typer

from benchmark.commands import options


def _names(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    return names or None


def register(app: typer.Typer) -> None:
    @app.command()
    def compare(
        task: str | None = typer.Option(
            None, "--task", "-t", help="Task name(s), comma-separated."
        ),
        models: str | None = typer.Option(
            None, "--models", "-m", help="Model names, comma-separated (default: all on the task)."
        ),
        metric: str = typer.Option("nDCG@10", help="Metric with per-query scores."),
        results_dir: Path | None = typer.Option(None, help="Results database (default results/)."),
        fmt: str | None = typer.Option(
            None, "--format", help="json, markdown or latex (default: from --out's suffix)."
        ),
        out: Path | None = typer.Option(None, help="Write the comparison to this file."),
        permutations: options.Permutations = options.PERMUTATIONS,
        bootstrap: options.Bootstrap = options.BOOTSTRAP,
        seed: options.Seed = options.SEED,
        alpha: options.Alpha = options.ALPHA,
        baseline: str | None = typer.Option(
            None, help="Compare every model with this one only (one-vs-all)."
        ),
        wide: bool = typer.Option(False, help="Every column (d, W/T/L, raw p, BH); needs ~160 columns."),
    ) -> None:
        """Pairwise paired randomization tests (Holm/BH corrected), bootstrap CIs, effect sizes.

        --task T: every model on T.  --models A,B: those models on all tasks they share."""
        from rich.console import Console

        from benchmark.comparison.compare import StatsOptions, build_report, load_table
        from benchmark.comparison.report import FORMATS, SUFFIXES
        from benchmark.core.errors import MaebenchError
        from benchmark.core.paths import results_dir as default_results_dir

        if fmt is not None and fmt not in FORMATS:
            raise MaebenchError(f"unknown --format '{fmt}' (known: {', '.join(FORMATS)})")
        if out is not None and fmt is None:
            fmt = SUFFIXES.get(out.suffix.lower())
            if fmt is None:
                raise MaebenchError(f"cannot tell the format of {out}; pass --format")
        table = load_table(results_dir or default_results_dir())
        options = StatsOptions(
            metric=metric, n_perm=permutations, n_boot=bootstrap, seed=seed, alpha=alpha
        )
        from benchmark.core.progress import spinner

        with spinner(Console(stderr=True), "paired tests and bootstrap intervals"):
            report = build_report(table, _names(task), _names(models), options, baseline)
        if fmt is not None and out is None:
            typer.echo(FORMATS[fmt](report), nl=False)
            return
        from benchmark.comparison.console import render_rich

        console = Console()
        if not console.is_terminal:  # a pipe: the layout's own width (compact fits 100)
            console = Console(width=200 if wide else 100)
        render_rich(report, console, wide=wide)
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(FORMATS[fmt](report), encoding="utf-8")
            Console(stderr=True).print(f"wrote {out}")

"""`maebench submit`: validate a bundle (card + results + runs) and add it to results/."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def submit(
        bundle: Path = typer.Argument(..., help="Folder with <model>.yaml, <task>.json, <task>.run.gz."),
        check: bool = typer.Option(False, "--check", help="Validate only; change nothing."),
        replace: bool = typer.Option(
            False, "--replace", help="Replace existing results / a different card of that name."
        ),
        data_dir: Path | None = typer.Option(
            None, help="Folder of BEIR datasets to verify against; env MAEBENCH_DATA_DIR."
        ),
        results_dir: Path | None = typer.Option(None, help="Results database (default results/)."),
        models_dir: Path | None = typer.Option(None, help="Model registry (default models/)."),
        summary: Path | None = typer.Option(
            None, "--summary", help="Also write the check as markdown (verdict, warnings, drift, "
            "a table against the leaderboard's models) to this file, e.g. a CI job summary; a "
            "rejected bundle gets its one-line reason there too."),
    ) -> None:
        """Validate a result bundle (numbers recomputed from its runs) and add it, all or nothing."""
        from benchmark.core.errors import MaebenchError
        from benchmark.core.paths import models_dir as default_models_dir
        from benchmark.core.paths import results_dir as default_results_dir
        from benchmark.submission.review import (
            aggregate_diff,
            failure_markdown,
            leaderboard_rows,
            summary_markdown,
        )
        from benchmark.submission.submit import submit as do_submit

        results = results_dir or default_results_dir()
        models = models_dir or default_models_dir()
        try:
            sub, written = do_submit(bundle, results, models, data_dir, replace, check_only=check)
        except MaebenchError as error:
            if summary is not None:  # the reviewer's copy of the reason; the error still exits
                summary.write_text(failure_markdown(bundle, str(error)), encoding="utf-8")
            raise
        if summary is not None:
            summary.write_text(summary_markdown(sub, results, checked_only=check), encoding="utf-8")
        verb = "valid" if check else "accepted"
        typer.echo(f"{verb}: model {sub.model}, tasks {', '.join(r.result.task.name for r in sub.results)}")
        for item in sub.results:
            if item.bounds_only:
                typer.echo(
                    f"  {item.result.task.name}: {', '.join(item.bounds_only)} not recomputable from "
                    f"a top-{item.result.run.depth} run (bounds checked only)"
                )
            if item.already_stored:
                typer.echo(f"  {item.result.task.name}: already stored, identical (nothing to write)")
            if item.previous is not None:
                typer.echo(f"  {item.result.task.name}: replaces the stored result")
                for metric, old, new, delta in aggregate_diff(item.previous, item.result):
                    typer.echo(f"    {metric:8s} {old:.4f} -> {new:.4f} ({delta:+.4f})")
        if sub.card_replaces:
            typer.echo(f"  card models/{sub.model}.yaml {'would be' if check else 'was'} replaced")
        elif sub.card_is_new:
            typer.echo(f"  card models/{sub.model}.yaml {'would be' if check else 'was'} added")
        for path in written:
            typer.echo(f"  wrote {path}")
        for text in sub.warnings:
            typer.secho(f"WARNING {text}", fg="red", bold=True)
        typer.echo("leaderboard (nDCG@10; delta = new model minus this row; p = paired randomization "
                   "test; tied scores share a rank):")
        for task, rank, model, score, delta, p_value in leaderboard_rows(sub, results):
            mark = "*" if model == sub.model else " "
            p_text = "" if p_value is None else f"  p={p_value:.4f}"
            typer.echo(f"  {task:16s} #{rank:<3d}{mark}{model:28s} {score:.4f}  {delta:+.4f}{p_text}")

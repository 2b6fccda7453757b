"""`maebench site`: build the static leaderboard from the results database."""

from __future__ import annotations

from pathlib import Path

import typer

from benchmark.commands import options


def register(app: typer.Typer) -> None:
    @app.command()
    def site(
        out: Path = typer.Option(Path("site/_build"), help="Output folder (replaced on rebuild)."),
        results_dir: Path | None = typer.Option(None, help="Results database (default results/)."),
        models_dir: Path | None = typer.Option(None, help="Model registry (default models/)."),
        baseline: str = typer.Option("bm25", help="Model the significance markers compare to."),
        metric: str = typer.Option("nDCG@10", help="Leaderboard metric (needs per-query scores)."),
        top_n: int = typer.Option(40, min=2, help="Models in each task's pairwise matrix."),
        permutations: options.Permutations = options.PERMUTATIONS,
        bootstrap: options.Bootstrap = options.BOOTSTRAP,
        seed: options.Seed = options.SEED,
        alpha: options.Alpha = options.ALPHA,
        data_dir: Path | None = typer.Option(
            None, help="BEIR datasets, for query texts and judgements on per-query pages; "
            "env MAEBENCH_DATA_DIR."
        ),
    ) -> None:
        """Build the static leaderboard site (open OUT/index.html in a browser)."""
        from benchmark.comparison.compare import StatsOptions
        from benchmark.core.paths import refuse_owned_output
        from benchmark.core.paths import results_dir as default_results_dir
        from benchmark.site.build import SiteOptions, build_site

        refuse_owned_output(out, also=(("results database", results_dir), ("models folder", models_dir)))
        from benchmark.core.errors import MaebenchError
        from benchmark.evaluation.metrics import STANDARD_METRICS
        from benchmark.results.result_store import stored_models

        if metric not in STANDARD_METRICS:
            raise MaebenchError(f"unknown metric '{metric}' (known: {', '.join(STANDARD_METRICS)})")
        results_dir = results_dir or default_results_dir()
        models = stored_models(results_dir)
        if models and baseline not in models:
            raise MaebenchError(f"baseline '{baseline}' has no results (models: {', '.join(models)})")
        options = SiteOptions(
            results_dir=results_dir,
            out_dir=out,
            models_dir=models_dir,
            baseline=baseline,
            top_n=top_n,
            stats=StatsOptions(
                metric=metric, n_perm=permutations, n_boot=bootstrap, seed=seed, alpha=alpha
            ),
        )
        from rich.console import Console

        from benchmark.core.paths import data_dir_from_env
        from benchmark.core.progress import spinner

        options.data_dir = data_dir or data_dir_from_env()
        with spinner(Console(stderr=True), "building the site (paired tests, pages)"):
            report = build_site(options)
        phases = ", ".join(f"{k} {v:.2f}s" for k, v in report.timings.items())
        typer.echo(
            f"built {len(report.pages)} pages from {report.n_results} results in {out} ({phases})",
            err=True,
        )
        typer.echo(str((out / "index.html").resolve()))

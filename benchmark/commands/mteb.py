"""`maebench export-mteb` and `maebench import-mteb`: results to and from MTEB's file format."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("export-mteb")
    def export_mteb(
        out: Path = typer.Option(..., help="Folder to write <org>__<name>/<revision>/<Task>.json into."),
        model: str | None = typer.Option(None, "--model", "-m", help="Only these models (comma-separated)."),
        results_dir: Path | None = typer.Option(None, help="Results database (default results/)."),
    ) -> None:
        """Write stored results as MTEB result files (tasks without an MTEB twin are skipped)."""
        from benchmark.catalog.tasks import get_task
        from benchmark.core.paths import refuse_owned_output
        from benchmark.core.paths import results_dir as default_results_dir
        from benchmark.results.mteb_files import export_results
        from benchmark.results.result_store import iter_results

        refuse_owned_output(out, also=(("results database", results_dir),))
        wanted = {m.strip() for m in model.split(",")} if model else None
        results = [
            r for _, r in iter_results(results_dir or default_results_dir())
            if (wanted is None or r.model.name in wanted) and get_task(r.task.name).mteb is not None
        ]
        for path in export_results(results, out):
            typer.echo(str(path))

    @app.command("import-mteb")
    def import_mteb(
        files: list[Path] = typer.Argument(..., help="MTEB result JSON files (one model)."),
        model: str = typer.Option(..., "--model", "-m", help="Registry card the numbers belong to."),
        name: str = typer.Option(..., help="Stem of results/reported/<name>.yaml to write."),
        title: str = typer.Option("MTEB results", help="Source title shown on the site."),
        repo: str | None = typer.Option("embeddings-benchmark/results", help="Results repository."),
        commit: str | None = typer.Option(None, help="Commit of the results repository."),
        folder: str | None = typer.Option(None, help="Path of the files inside the repository."),
        results_dir: Path | None = typer.Option(None, help="Results database (default results/)."),
        overwrite: bool = typer.Option(False, help="Replace an existing reported file."),
    ) -> None:
        """Import MTEB result files as reported (published) numbers for MODEL."""
        from benchmark.catalog.registry import get_card
        from benchmark.core.errors import MaebenchError
        from benchmark.core.paths import check_name
        from benchmark.results.mteb_files import import_mteb as build

        check_name(name, "--name")
        card = get_card(model)
        cfg = card.retriever
        checkpoint = getattr(cfg, "checkpoint", None) or getattr(cfg, "query_checkpoint", None)
        prefix = folder.rstrip("/") + "/" if folder else ""
        source = {"kind": "results-repo", "title": title, "repo": repo, "path": folder,
                  "commit": commit, "path_prefix": prefix}
        text = build(files, card.name, checkpoint, source)
        from benchmark.results.result_store import reported_dir

        target = reported_dir(results_dir) / f"{name}.yaml"
        if target.exists() and not overwrite:
            raise MaebenchError(f"{target} already exists; pass --overwrite to replace it")
        from benchmark.core.files import atomic_write

        atomic_write(target, text.encode("utf-8"))
        typer.echo(str(target))

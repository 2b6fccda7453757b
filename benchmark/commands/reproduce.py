"""`maebench reproduce`: re-run a paper's table and compare with its published numbers."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command()
    def reproduce(
        spec_id: str | None = typer.Argument(None, help="Reproduction id (see --list)."),
        list_specs: bool = typer.Option(False, "--list", help="List the reproduction specs."),
        data_dir: Path | None = typer.Option(
            None, help="Folder of BEIR datasets (<dir>/<task>/corpus.jsonl); env MAEBENCH_DATA_DIR."
        ),
        results_dir: Path | None = typer.Option(None, help="Results database (default results/)."),
        no_run: bool = typer.Option(False, "--no-run", help="Only compare stored results."),
        not_run_ok: bool = typer.Option(
            False, "--not-run-ok", help="Exit 0 (not 3) when cells are NOT RUN and none FAILs."
        ),
    ) -> None:
        """Compare reproduced scores with a paper's reported ones: OK / OKish / FAIL / NOT RUN.

        Exit status: 0 every cell OK or OKish; 1 a cell FAILs; 3 no FAIL but cells NOT RUN
        (0 with --not-run-ok); 2 usage or data errors."""
        from rich.console import Console

        from benchmark.core.paths import data_dir_from_env
        from benchmark.reproduction.reproduce import (
            exit_status,
            format_table,
            get_spec,
            load_specs,
            specs_dir,
            write_report,
        )
        from benchmark.reproduction.reproduce import reproduce as run_reproduction

        if list_specs or spec_id is None:
            specs = load_specs(results_dir)
            if not specs:
                typer.echo(f"no reproduction specs in {specs_dir(results_dir)}")
            for spec in specs.values():
                models = sorted({c.model or spec.model for c in spec.cells})
                typer.echo(f"{spec.id:28s} {len(spec.cells):3d} cells  {', '.join(models)}  {spec.title}")
            return
        console = Console(stderr=True)
        spec = get_spec(spec_id, results_dir)
        report = run_reproduction(
            spec, results_dir, data_dir or data_dir_from_env(), no_run,
            progress=lambda text: console.print(text),
        )
        # the terminal shows this machine's paths; the stored report (committed, read elsewhere)
        # names the data dir as <data-dir>
        for line in format_table(report):
            typer.echo(line)
        _portable(report, data_dir or data_dir_from_env())
        path = write_report(report, results_dir)
        console.print(f"stored {path}")
        code = exit_status(report, not_run_ok)
        if code:
            console.print(
                "exit 1: a cell FAILs" if code == 1 else
                "exit 3: cells NOT RUN (the reasons above; --not-run-ok exits 0 for them)")
            raise typer.Exit(code)


def _portable(report, data_dir: Path | None) -> None:
    """Name data locations relative to the data dir (`<data-dir>/trec-covid`), never the user's
    absolute path: reports are committed and read on other machines."""
    if data_dir is None:
        return
    spellings = sorted({str(data_dir), str(Path(data_dir).resolve())}, key=len, reverse=True)

    def fix(text: str | None) -> str | None:
        if text is None:
            return None
        for spelling in spellings:
            text = text.replace(spelling, "<data-dir>")
        return text

    for cell in report.cells:
        cell.reason = fix(cell.reason)
        cell.command = fix(cell.command)

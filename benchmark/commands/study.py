"""`maebench study`: a controlled comparison of pre-training objectives (resumable)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("study")
    def study(
        spec: str = typer.Argument(..., help="a study spec file or a bundled spec's name"),
        set_: list[str] = typer.Option([], "--set", help="override a top-level spec field, e.g. "
                                       "scale=100 (repeatable)"),
        profile: str | None = typer.Option(None, "--profile", help="one of the spec's named "
                                           "scale profiles, e.g. msmarco-gpu"),
        data_dir: Path | None = typer.Option(None, "--data-dir", envvar="MAEBENCH_DATA_DIR"),
        device: str | None = typer.Option(None, "--device"),
        only: str | None = typer.Option(None, "--only", help="'pretrain': run only pre-training"),
        report_only: bool = typer.Option(False, "--report-only", help="write the report from the "
                                         "finished cells, run nothing"),
        max_cells: int | None = typer.Option(None, "--max-cells", min=1),
        calibrate: bool = typer.Option(False, "--calibrate", help="run the spec's calibration "
                                       "probes (train and held-out data only) and record them"),
        register: bool = typer.Option(False, "--register", help="record the design (hash) and "
                                      "stop: commit it before the study's first test number"),
        continue_past_gates: bool = typer.Option(False, "--continue-past-gates", help="spend the "
                                                 "next stage's budget after a failed gate (the "
                                                 "report lists it as a deviation)"),
    ) -> None:
        """Run every missing cell (pretrain -> finetune -> run), then write the study report."""
        from benchmark.training.finetune import passive_thread_wait

        passive_thread_wait()  # training: OpenMP threads sleep, not spin (before torch loads)
        from benchmark.core.errors import MaebenchError
        from benchmark.studies.report import format_table, write_report
        from benchmark.studies.runner import run_study
        from benchmark.studies.spec import StudyOptions, load_spec
        from benchmark.training.recipes import parse_overrides

        overrides = parse_overrides(set_)
        if only not in (None, "pretrain"):
            raise MaebenchError(f"--only '{only}': only 'pretrain' is supported")
        spec_obj = load_spec(spec, overrides, profile)
        if calibrate:
            from benchmark.studies.calibrate import calibrate as run_calibration

            path = run_calibration(spec_obj, StudyOptions(data_dir=data_dir, device=device),
                                   echo=typer.echo)
            typer.echo(f"wrote {path}")
            return
        if register:
            from benchmark.studies.registration import register as record

            path, new = record(spec_obj)
            typer.echo(f"{'registered' if new else 'already registered'}: {path}")
            return
        if report_only:
            import json

            path = write_report(spec_obj, data_dir)
            typer.echo(format_table(json.loads(path.read_text(encoding="utf-8"))))
            typer.echo(f"wrote {path}")
            return
        path = run_study(spec_obj, StudyOptions(data_dir=data_dir, device=device, only=only,
                                                max_cells=max_cells,
                                                continue_past_gates=continue_past_gates),
                         echo=typer.echo)
        if path:
            import json

            typer.echo(format_table(json.loads(path.read_text(encoding="utf-8"))))
            typer.echo(f"wrote {path}")

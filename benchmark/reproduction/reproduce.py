"""Reported-vs-reproduced checks: re-run a paper's table and say OK / OKish / FAIL / NOT RUN.

A reproduction spec (results/reproductions/specs/<id>.yaml) names reported cells (a file under
results/reported/, a registry model, a catalog task, a metric) and the tolerance per metric and
model kind. `reproduce` reuses a stored result when it may stand in for a fresh run (the
card's current configuration, the task's settings, the same data: benchmark.results.reuse, as
`maebench run` decides), runs what is missing through the normal pipeline, and never turns a
failure into a pass: a cell whose model or data cannot be loaded here is NOT RUN, with the
one-line reason and the command that would reproduce it.

Why absolute tolerances: published numbers are rounded (3 decimals in papers, 5 in MTEB), and
the legitimate noise sources (fp32 vs fp16, CPU vs GPU kernels, library versions) move dense
scores by a few 1e-3; BM25 implementations agree more closely. OK always means the default
tolerance below: a spec cannot widen it. OKish (within okish_factor x the tolerance, or within
the bound of a spec's declared `known_difference`) flags "close, look at it" and always carries
its reason (e.g. "bm25s's analyzer is not Lucene's"), never hiding a known gap as a pass.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from benchmark.core.errors import MaebenchError
from benchmark.core.paths import results_dir as default_results_dir
from benchmark.core.validation import Strict, read_yaml_text, validate_yaml
from benchmark.results.result_store import reproductions_dir

ID_PATTERN = r"^[a-z0-9][a-z0-9._\-]{0,79}$"
Kind = Literal["bm25", "dense"]
Status = Literal["OK", "OKish", "FAIL", "NOT RUN"]

# Absolute tolerances per model kind and metric (specs cannot override them). Every metric a
# catalog task reports needs one: R@50 is MS MARCO dev's (the MAE papers' R@50 column).
DEFAULT_TOLERANCE: dict[str, dict[str, float]] = {
    "bm25": {"nDCG@10": 0.002, "MRR@10": 0.002, "R@50": 0.003, "R@100": 0.003, "R@1000": 0.003,
             "MAP@100": 0.002},
    "dense": {"nDCG@10": 0.003, "MRR@10": 0.003, "R@50": 0.005, "R@100": 0.005, "R@1000": 0.005,
              "MAP@100": 0.003},
}


class ReproduceError(MaebenchError):
    """A reproduction spec is malformed or refers to reported cells that do not exist."""


class KnownDifference(Strict):
    """An explained gap between our setup and the paper's (another BM25 analyzer, a corpus
    without titles): cells beyond the default tolerance but within `bound` are OKish with this
    reason; beyond it they FAIL. It never changes what OK means."""

    reason: str = Field(min_length=10)
    bound: dict[Kind, dict[str, float]]

    @model_validator(mode="after")
    def _metrics(self) -> KnownDifference:
        from benchmark.evaluation.metrics import Metric

        for metrics in self.bound.values():
            for metric, value in metrics.items():
                Metric.parse(metric)
                if not (value > 0 and math.isfinite(value)):
                    raise ValueError(f"bound for {metric} must be a positive number")
        return self


class SpecCell(Strict):
    """One cell to re-run; model / reported / system default to the spec's."""

    task: str = Field(pattern=ID_PATTERN)
    metric: str
    model: str | None = Field(default=None, pattern=ID_PATTERN)
    reported: str | None = Field(default=None, pattern=ID_PATTERN)
    system: str | None = None


class Spec(Strict):
    id: str = Field(pattern=ID_PATTERN)
    title: str
    description: str | None = None
    model: str | None = Field(default=None, pattern=ID_PATTERN)
    reported: str | None = Field(default=None, pattern=ID_PATTERN, description="results/reported/<file>.yaml")
    system: str | None = None
    known_difference: KnownDifference | None = None
    okish_factor: float = Field(default=2.0, ge=1.0, le=5.0)
    cells: list[SpecCell] = Field(min_length=1)

    @model_validator(mode="after")
    def _complete(self) -> Spec:
        from benchmark.evaluation.metrics import Metric

        for index, cell in enumerate(self.cells):
            if not (cell.model or self.model):
                raise ValueError(f"cells.{index}: no model (set it on the cell or the spec)")
            if not (cell.reported or self.reported):
                raise ValueError(f"cells.{index}: no reported file (set it on the cell or the spec)")
            Metric.parse(cell.metric)
        return self

    def tolerance_for(self, cell: SpecCell, kind: str | None) -> float | None:
        """The default tolerance of the metric for this model kind (specs cannot change it)."""
        return DEFAULT_TOLERANCE.get(kind or "dense", {}).get(cell.metric)

    def known_bound(self, cell: SpecCell, kind: str | None) -> float | None:
        if self.known_difference is None:
            return None
        return self.known_difference.bound.get(kind or "dense", {}).get(cell.metric)


def specs_dir(results_dir: Path | None = None) -> Path:
    return reproductions_dir(results_dir) / "specs"


def reports_dir(results_dir: Path | None = None) -> Path:
    return reproductions_dir(results_dir)


def parse_spec(text: str, origin: str) -> Spec:
    return validate_yaml(text, Spec, origin, ReproduceError, "a reproduction spec")


def load_specs(results_dir: Path | None = None) -> dict[str, Spec]:
    folder = specs_dir(results_dir)
    specs: dict[str, Spec] = {}
    if not folder.is_dir():
        return specs
    for path in sorted(folder.glob("*.yaml")):
        spec = parse_spec(read_yaml_text(path, ReproduceError), str(path))
        if spec.id != path.stem:
            raise ReproduceError(f"{path}: field id: '{spec.id}' must match the file name")
        specs[spec.id] = spec
    return specs


def get_spec(spec_id: str, results_dir: Path | None = None) -> Spec:
    specs = load_specs(results_dir)
    if spec_id not in specs:
        known = ", ".join(sorted(specs)) or "none"
        raise ReproduceError(f"unknown reproduction '{spec_id}' (known: {known})")
    return specs[spec_id]


# --------------------------------------------------------------------------- classification


def classify(
    reported: float, reproduced: float | None, tolerance: float | None, okish_factor: float
) -> Status:
    """OK within the tolerance, OKish within okish_factor x it, FAIL beyond; NOT RUN without a number."""
    return judge(reported, reproduced, tolerance, okish_factor)[0]


def judge(
    reported: float,
    reproduced: float | None,
    tolerance: float | None,
    okish_factor: float,
    known: KnownDifference | None = None,
    known_bound: float | None = None,
) -> tuple[Status, str | None]:
    """(status, why it is OKish). OK only within the default tolerance; OKish within
    okish_factor x it, or within a declared known difference's bound (with its reason)."""
    if reproduced is None or not math.isfinite(reproduced):
        return "NOT RUN", None
    if tolerance is None:
        raise ReproduceError("no tolerance for this metric and model kind")
    delta = abs(reproduced - reported)
    slack = 1e-9  # published values are decimals; do not fail on float representation
    if delta <= tolerance + slack:
        return "OK", None
    if delta <= okish_factor * tolerance + slack:
        return "OKish", f"within {okish_factor:g}x the tolerance {tolerance:g}"
    if known is not None and known_bound is not None and delta <= known_bound + slack:
        return "OKish", f"known difference (within {known_bound:g}): {known.reason}"
    return "FAIL", None


# --------------------------------------------------------------------------- resolving cells


@dataclass
class CellReport:
    model: str
    task: str
    metric: str
    reported: float
    reported_file: str
    system: str
    confidence: str
    source: str
    reproduced: float | None = None
    delta: float | None = None
    tolerance: float | None = None
    status: Status = "NOT RUN"
    reason: str | None = None
    command: str | None = None
    result: str | None = None
    reused: bool = False


@dataclass
class Report:
    id: str
    title: str
    created_at: str
    okish_factor: float
    cells: list[CellReport] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in ("OK", "OKish", "FAIL", "NOT RUN")}
        for cell in self.cells:
            out[cell.status] += 1
        return out

    def __str__(self) -> str:
        """The table `maebench reproduce` prints (format_table)."""
        return "\n".join(format_table(self))

    def as_dict(self) -> dict:
        return {
            "schema_version": 1, "id": self.id, "title": self.title, "created_at": self.created_at,
            "okish_factor": self.okish_factor, "counts": self.counts(),
            "cells": [asdict(c) for c in self.cells],
        }


def _find_reported(spec: Spec, cell: SpecCell, reported: list):
    file = cell.reported or spec.reported
    model = cell.model or spec.model
    system = cell.system or spec.system
    matches = [
        r for r in reported
        if r.file == file and r.key == (model, cell.task, cell.metric)
        and (system is None or r.cell.system == system)
    ]
    where = f"{file}:{model}:{cell.task}:{cell.metric}" + (f" ({system})" if system else "")
    if not matches:
        raise ReproduceError(f"spec {spec.id}: no reported cell {where} in results/reported/")
    if len(matches) > 1:
        systems = sorted({m.cell.system for m in matches})
        raise ReproduceError(f"spec {spec.id}: {where} is ambiguous; set system to one of {systems}")
    return matches[0]


def run_command(model: str, task: str, data_dir: Path | None) -> str:
    """The `maebench run` line for one cell; names the given data dir only where it has the task."""
    from benchmark.catalog.tasks import get_task

    parts = ["maebench", "run", "--model", model, "--task", task]
    try:
        spec = get_task(task)
    except MaebenchError:
        spec = None
    if spec is None or spec.embedded_path is None:
        local = spec is not None and data_dir is not None and (Path(data_dir) / spec.relative_path).is_dir()
        parts += ["--data-dir", str(data_dir) if local else "<BEIR dir>"]
    return shlex.join(parts).replace("'<BEIR dir>'", "<BEIR dir>")


def _cannot_run(card, task, data_dir: Path | None) -> str | None:
    """Why a fresh run of (card, task) cannot start here, found before starting it: the data is
    not under the data dir (or, without one, not in the cache: then the run may download it), or
    a dense card's weights cannot be found. None: it can start."""
    from benchmark.core.paths import data_dir_from_env
    from benchmark.datasets.beir import resolve_folder

    if (data_dir or data_dir_from_env()) is not None:
        from benchmark.catalog.tasks import get_task

        parts = [get_task(t) for t in task.subtasks] if task.is_aggregate else [task]
        for part in parts:  # an aggregate (CQADupStack) needs every forum's folder
            try:
                resolve_folder(part, data_dir, download=False)
            except MaebenchError as exc:
                return str(exc).splitlines()[0]
    config = card.retriever
    if config.kind == "dense" and not config.has_checkpoint:
        return f"{card.name}: its weights were never released"
    if config.kind == "dense":
        from benchmark.catalog.weights import load_failure, resolve_checkpoint

        for checkpoint in dict.fromkeys(c for c in (
                config.checkpoint, getattr(config, "query_checkpoint", None),
                getattr(config, "passage_checkpoint", None)) if c):
            try:
                source, origin = resolve_checkpoint(checkpoint, config.local_package,
                                                    config.revision)
                if origin == "hub":
                    from transformers import AutoConfig

                    AutoConfig.from_pretrained(source, revision=config.revision)
            except MaebenchError as exc:
                return str(exc).splitlines()[0]
            except (OSError, ValueError) as exc:
                return str(load_failure(checkpoint, config.revision, exc)).splitlines()[0]
    return None


def _reproduce_pair(
    model: str, task_name: str, results_dir: Path, data_dir: Path | None, no_run: bool,
    progress=None,
) -> tuple[object | None, str | None, bool, str | None]:
    """(result, reason-if-none, reused, path) for one (model, task); `progress` hears of a run
    only when one starts (a cell that cannot run is not announced as running)."""
    from benchmark.catalog.registry import get_card
    from benchmark.catalog.tasks import get_task
    from benchmark.pipeline.runner import RunOptions, run_task
    from benchmark.results.result_store import read_result
    from benchmark.results.reuse import stored_stand_in

    try:
        card = get_card(model)
        task = get_task(task_name)
    except MaebenchError as exc:
        return None, str(exc), False, None
    stored = stored_stand_in(results_dir, card, task, data_dir)
    if stored is not None and stored.stands_in:
        return stored.result, None, True, str(stored.path)
    if stored is not None:
        return None, f"stored {stored.path} {stored.why_not}; re-run with --overwrite", False, None
    if no_run:
        return None, "no stored result (--no-run)", False, None
    why_not = _cannot_run(card, task, data_dir)
    if why_not is not None:
        return None, why_not, False, None
    if progress is not None:
        progress(f"running {model} on {task_name} ...")
    options = RunOptions(
        results_dir=results_dir, data_dir=data_dir,
        # no user path in a stored result: the data dir is named as a placeholder
        command=f"maebench reproduce (via {run_command(model, task_name, None)})",
    )
    try:
        path = run_task(card, task, options)
    except MaebenchError as exc:
        return None, str(exc).splitlines()[0], False, None
    except OSError as exc:  # e.g. a cache folder that cannot be written
        return None, f"{type(exc).__name__}: {exc}".splitlines()[0], False, None
    return read_result(path), None, False, str(path)


def reproduce(
    spec: Spec,
    results_dir: Path | None = None,
    data_dir: Path | None = None,
    no_run: bool = False,
    progress=None,
) -> Report:
    """Resolve every cell, reuse or run each (model, task) once, classify, return the report."""
    from benchmark.catalog.registry import get_card

    results_dir = results_dir or default_results_dir()
    from benchmark.results.reported import load_reported

    reported = load_reported(results_dir)
    resolved = [(cell, _find_reported(spec, cell, reported)) for cell in spec.cells]
    outcomes: dict[tuple[str, str], tuple] = {}
    report = Report(
        spec.id, spec.title, dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        spec.okish_factor,
    )
    for cell, rep in resolved:
        pair = (rep.cell.model, cell.task)
        if pair not in outcomes:
            outcomes[pair] = _reproduce_pair(pair[0], pair[1], results_dir, data_dir, no_run,
                                             progress)
        result, reason, reused, path = outcomes[pair]
        try:
            kind = get_card(rep.cell.model).retriever.kind
        except MaebenchError:
            kind = None
        value = None
        if result is not None:
            value = result.metrics.get(cell.metric)
            if value is None:
                reason = f"the stored result has no {cell.metric} (not recomputable from its run)"
        tolerance = spec.tolerance_for(cell, kind)
        status, okish_reason = judge(
            rep.cell.value, value, tolerance, spec.okish_factor,
            spec.known_difference, spec.known_bound(cell, kind),
        )
        report.cells.append(CellReport(
            model=rep.cell.model, task=cell.task, metric=cell.metric,
            reported=rep.cell.value, reported_file=rep.file, system=rep.cell.system,
            confidence=rep.cell.confidence,
            source=rep.source.title + (f", {rep.source.table}" if rep.source.table else ""),
            reproduced=value, delta=None if value is None else value - rep.cell.value,
            tolerance=tolerance, status=status,
            reason=okish_reason if value is not None else reason,
            command=None if value is not None else run_command(rep.cell.model, cell.task, data_dir),
            result=_relative_to(path, results_dir), reused=reused,
        ))
    return report


def _relative_to(path: str | None, root: Path) -> str | None:
    """Stored reports name results relative to results/, so they read the same on any machine."""
    if path is None:
        return None
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return path


def write_report(report: Report, results_dir: Path | None = None) -> Path:
    from benchmark.core.files import atomic_write

    path = reports_dir(results_dir) / f"{report.id}.json"
    atomic_write(path, (json.dumps(report.as_dict(), indent=1, sort_keys=True) + "\n").encode())
    return path


def load_reports(results_dir: Path | None = None) -> list[dict]:
    folder = reports_dir(results_dir)
    if not folder.is_dir():
        return []
    reports = []
    for path in sorted(folder.glob("*.json")):
        try:
            reports.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as exc:
            raise ReproduceError(f"{path}: cannot read reproduction report ({exc})") from exc
    return reports


# `maebench reproduce` exit status (README "Submitting and reproducing")
EXIT_OK, EXIT_FAIL, EXIT_NOT_RUN = 0, 1, 3


def exit_status(report: Report, not_run_ok: bool = False) -> int:
    """1 when any cell FAILs; else 3 when a cell is NOT RUN (0 with `not_run_ok`); else 0."""
    counts = report.counts()
    if counts["FAIL"]:
        return EXIT_FAIL
    if counts["NOT RUN"] and not not_run_ok:
        return EXIT_NOT_RUN
    return EXIT_OK


TOLERANCE_NOTE = ("tol = absolute tolerance on the metric (|reproduced - reported|; 0.002 is 0.2 "
                  "points ×100), fixed per model kind; OKish = within {factor:g}x tol or a "
                  "declared known difference")


def format_table(report: Report) -> list[str]:
    lines = [
        f"{report.id}: {report.title}",
        f"{'model':26s} {'task':16s} {'metric':8s} {'reported':>9s} {'reproduced':>10s} "
        f"{'delta':>8s} {'abs tol':>7s}  status",
    ]
    explained: set[tuple[str, str]] = set()
    for c in report.cells:
        reproduced = "" if c.reproduced is None else f"{c.reproduced:.4f}"
        delta = "" if c.delta is None else f"{c.delta:+.4f}"
        tol = "" if c.tolerance is None else f"±{c.tolerance:.3f}"
        lines.append(
            f"{c.model:26s} {c.task:16s} {c.metric:8s} {c.reported:9.4f} {reproduced:>10s} "
            f"{delta:>8s} {tol:>7s}  {c.status}{' (stored)' if c.reused else ''}"
        )
        if c.status == "OKish":
            lines.append(f"    OKish: {c.reason}")
        if c.status == "NOT RUN" and (c.model, c.task) not in explained:
            explained.add((c.model, c.task))
            lines.append(f"    reason: {c.reason}")
            lines.append(f"    to reproduce: {c.command}")
    counts = report.counts()
    lines.append(TOLERANCE_NOTE.format(factor=report.okish_factor))
    lines.append("  ".join(f"{k} {v}" for k, v in counts.items()))
    return lines


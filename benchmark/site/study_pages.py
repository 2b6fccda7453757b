"""Site pages for studies (results/studies/<id>.json): one page per study with its table and a
plot of score against pre-training cost, plus an index. Listed in benchmark.site.pages, so the
core site code knows nothing about studies."""

from __future__ import annotations

from pathlib import Path

import jinja2
from markupsafe import Markup

from benchmark.results.result_store import studies_dir
from benchmark.site.pages import Pages

# a cell whose fine-tuning or evaluation has not finished yet has no such costs
CELL_DEFAULTS = {"pretrain_steps": None, "pretrain_tokens": None, "pretrain_wall_s": None,
                 "finetune_wall_s": None, "eval_wall_s": None, "hardware": None}


def _rows(report: dict) -> list[dict]:
    from benchmark.studies.report import report_rows

    return report_rows(report)


def _pilot_edge(pilot: dict | None) -> str | None:
    from benchmark.studies.report import pilot_edge

    return pilot_edge(pilot)


# the same pre-training work (one arm, one budget) taking this many times longer for one seed
# than another says the machine was loaded, not that the objective is slow
SPREAD_FACTOR = 4.0


def time_flags(report: dict) -> dict[str, str]:
    """arm -> why its pre-training time is implausible: its seeds did the same work (same
    objective, budget and hardware) in times SPREAD_FACTOR x apart."""
    flags = {}
    for name, arm in report["arms"].items():
        for key, unit in (("pretrain_cpu_s", "CPU-s"), ("pretrain_wall_s", "s")):
            times = [c.get(key) for c in arm.get("cells", []) if c.get(key)]
            if len(times) >= 2 and max(times) > SPREAD_FACTOR * min(times):
                shown = ", ".join(f"{t:,.0f}" for t in sorted(times))
                flags[name] = (f"its seeds took {shown} {unit} for the same work: the machine "
                               "was loaded, so this time says little about the objective")
                break
    return flags


def _time_axis(rows: list[dict]) -> tuple[str, str]:
    """CPU-seconds where the report has them (steadier under load), else wall seconds."""
    if any(row.get("cpu_s") for row in rows):
        return "cpu_s", "pre-training CPU time per arm (CPU-s, mean over seeds)"
    return "wall", "pre-training wall time per arm (s, mean over seeds)"


# the floor and the ceiling a reader needs beside a study's scores: the same test set's BM25 and
# the one real pretrained dense model here (results/<model>/<task>.json, when stored)
REFERENCE_MODELS = (("bm25", "BM25"), ("all-minilm-l6-v2", "all-MiniLM-L6-v2"))


def reference_scores(results_dir: Path, report: dict) -> list[dict]:
    """[{model, label, task, score}] of REFERENCE_MODELS on the study's evaluation tasks."""
    import json

    from benchmark.core.files import read_regular_text

    out = []
    for model, label in REFERENCE_MODELS:
        for task in report["study"].get("evaluate") or []:
            path = results_dir / model / f"{task}.json"
            try:
                found = json.loads(read_regular_text(path, 1 << 26, "a stored result"))
                score = float(found["metrics"][report["metric"]])
            except Exception:  # noqa: BLE001 - no reference stored for this task: no line
                continue
            out.append({"model": model, "label": label, "task": task, "score": score})
    return out


def curve_plots(results_dir: Path, report: dict) -> list[dict]:
    """Training curves stored by the runner (results/studies/<id>/curves/<card>.json): per-step
    loss and each held-out evaluation, one small SVG per stage, so a reader sees whether training
    moved. [] for a study run before curves were kept."""
    import json

    from benchmark.core.files import read_regular_text
    from benchmark.site.svgplot import line_plot

    folder = studies_dir(results_dir) / report["study"]["id"] / "curves"
    if not folder.is_dir():
        return []
    plots = []
    for path in sorted(folder.glob("*.json")):
        try:
            log = json.loads(read_regular_text(path, 1 << 26, "a training curve"))
            losses = [float(v) for v in log.get("losses") or []]
        except Exception:  # noqa: BLE001 - a damaged curve is left out, said on the page
            plots.append({"card": path.stem, "svg": None, "note": "damaged curve file, not drawn"})
            continue
        series = {}
        if losses:
            window = max(1, len(losses) // 50)  # a running mean: steps are noisy
            series["training loss"] = [(i + 1, sum(losses[max(0, i - window + 1):i + 1])
                                        / len(losses[max(0, i - window + 1):i + 1]))
                                       for i in range(len(losses))]
        for entry in log.get("heldout") or []:
            for term, value in (entry.get("terms") or {}).items():
                if term == "bow_scale":
                    continue
                series.setdefault(f"held-out {term}", []).append((float(entry["step"]), float(value)))
        lrs = log.get("lrs") or []
        note = (f"{len(losses)} steps; learning rate peak {max(lrs):.2g}" if lrs else f"{len(losses)} steps")
        plots.append({"card": path.stem, "note": note,
                      "svg": Markup(line_plot(series, "step", "loss (nats)", title=path.stem))})
    return plots


def _plot(report: dict, rows: list[dict], flags: dict[str, str] | None = None,
          references: list[dict] | None = None) -> Markup:
    from benchmark.site.svgplot import Point, RefLine, scatter

    metric = report["metric"]
    baseline = report["study"]["baseline_arm"]
    key, x_label = _time_axis(rows)
    points, refs = [], [RefLine(y=r["score"] * 100, label=f"{r['label']} ({r['task']})")
                        for r in references or []]
    for row in rows:
        if row["mean"] is None or row.get("failed"):
            continue  # a failed arm is listed apart with its diagnostic, never plotted as a result
        if row["arm"] == baseline:
            refs.append(RefLine(y=row["mean"] * 100, label=f"{row['arm']} ({row['task']})"))
        flag = (flags or {}).get(row["arm"])
        seconds = float(row.get(key) or 0.0)
        points.append(Point(
            x=seconds, y=row["mean"] * 100, label=row["arm"], group="mae", hollow=flag is not None,
            tooltip=f"{row['arm']} on {row['task']}: {metric} {row['mean'] * 100:.2f} over "
                    f"{row['n_seeds']} seeds; pre-training {seconds:,.0f} "
                    f"{'CPU-s' if key == 'cpu_s' else 's'}, {row['tokens'] or 0:,.0f} tokens"
                    + (f" ({flag})" if flag else ""),
        ))
    # times and scores cannot be negative: both axes start at 0 at the lowest
    return Markup(scatter(points, x_label, f"{metric} ×100 (mean over seeds)",
                          ref_lines=tuple(refs), x_floor=0.0, y_floor=0.0, y_from_zero=True,
                          title=f"{report['study']['id']}: score vs pre-training cost"))


def _flat(value: object, prefix: str = "") -> list[str]:
    if isinstance(value, dict):
        return [line for key, item in sorted(value.items())
                for line in _flat(item, f"{prefix}.{key}" if prefix else str(key))]
    return [f"{prefix} {value}"]


def index_description(report: dict) -> str:
    """The studies index's line for a study. A profile (the same spec at another scale, with its
    own id) inherits the spec's description unless it has its own, so a report written before
    profiles could carry one read exactly like the full study's: that line then says which
    profile it is and what the profile changes."""
    study = report["study"]
    profiles = study.get("profiles") or {}
    for name, profile in sorted(profiles.items()):
        if not isinstance(profile, dict) or profile.get("id") != study["id"]:
            continue
        if profile.get("description"):
            return str(profile["description"])
        changes = "; ".join(_flat({k: v for k, v in profile.items() if k != "id"}))
        return (f"The '{name}' profile of its spec, not the full study: the same arms with "
                f"{changes}; everything else as in the spec (its page has the full description).")
    return str(study["description"])


def _load_report(path: Path) -> dict:
    """A study report, validated (studies.stored: a regular file, bounded, the fields the page
    reads typed and finite), that is the report of the study it is named after: the page is
    keyed by the id, so two files claiming one id would write one page over the other and both
    be listed linking to it. A report whose id is not its file name is one line, never a page."""
    from benchmark.studies.stored import StoredStudyFileError, load_report

    report = load_report(path)
    if report["study"]["id"] != path.stem:
        raise StoredStudyFileError(
            f"{path}: the report claims study id '{report['study']['id']}' but a study's report "
            f"is results/studies/<id>.json; two reports may not claim one id")
    return report


def study_pages(results_dir: Path) -> Pages:
    """The Studies entry and its pages, or nothing without a stored report. Every report is read
    and checked here, before anything is rendered: a damaged one is one line, never a page."""
    folder = studies_dir(results_dir)
    paths = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not paths:
        return Pages()
    reports = [_load_report(path) for path in paths]

    def render(env: jinja2.Environment) -> dict[str, str]:
        return _render(env, results_dir, reports)

    return Pages(nav=(("Studies", "studies.html"),), render=render)


def _render(env: jinja2.Environment, results_dir: Path, reports: list[dict]) -> dict[str, str]:
    from benchmark.studies.calibration_record import calibration_lines
    from benchmark.studies.gates import describe
    from benchmark.studies.report import verdict_line

    files: dict[str, str] = {}
    studies = []
    for report in reports:
        rows = _rows(report)
        sid = report["study"]["id"]
        href = f"study-{sid}.html"
        flags = time_flags(report)
        references = reference_scores(results_dir, report)
        files[href] = env.get_template("study.html").render(
            root="", title=f"Study {sid}", report=report, rows=rows,
            plot=_plot(report, rows, flags, references), time_flags=flags,
            time_axis=_time_axis(rows)[0], references=references,
            verdict=verdict_line(report), gate_lines=[describe(g) for g in report.get("gates") or []],
            calibration_lines=(calibration_lines(report["calibration"]) if report.get("calibration")
                               else []),
            curves=curve_plots(results_dir, report),
            pilot_edge=_pilot_edge(report.get("pilot")),
            cells=[{**CELL_DEFAULTS, **c, "arm": name}
                   for name, arm in report["arms"].items() for c in arm["cells"]],
        )
        studies.append({"id": sid, "href": href, "description": index_description(report),
                        "complete": report["complete"]})
    files["studies.html"] = env.get_template("study.html").render(
        root="", title="Studies", studies=studies, report=None)
    return files

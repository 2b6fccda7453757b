"""Site pages for studies (results/studies/<id>.json): one page per study with its table and a
plot of score against pre-training cost, plus an index. Registered in the leaderboard's
EXTRA_PAGES hook, so the core site code knows nothing about studies."""

from __future__ import annotations

import json
from pathlib import Path

from markupsafe import Markup

# a cell whose fine-tuning or evaluation has not finished yet has no such costs
CELL_DEFAULTS = {"pretrain_steps": None, "pretrain_tokens": None, "pretrain_wall_s": None,
                 "finetune_wall_s": None, "eval_wall_s": None, "hardware": None}


def _rows(report: dict) -> list[dict]:
    from benchmark.training.study_report import report_rows

    return report_rows(report)


def _plot(report: dict, rows: list[dict]) -> Markup:
    from benchmark.svgplot import Point, RefLine, scatter

    metric = report["metric"]
    baseline = report["study"]["baseline_arm"]
    points, refs = [], []
    for row in rows:
        if row["mean"] is None:
            continue
        if row["arm"] == baseline:
            refs.append(RefLine(y=row["mean"] * 100, label=f"{row['arm']} ({row['task']})"))
        points.append(Point(
            x=float(row["wall"] or 0.0), y=row["mean"] * 100, label=row["arm"], group="mae",
            tooltip=f"{row['arm']} on {row['task']}: {metric} {row['mean'] * 100:.2f} over "
                    f"{row['n_seeds']} seeds; pre-training {row['wall'] or 0:,.0f} s, "
                    f"{row['tokens'] or 0:,.0f} tokens",
        ))
    return Markup(scatter(points, "pre-training wall time per arm (s, mean over seeds)",
                          f"{metric} ×100 (mean over seeds)", ref_lines=tuple(refs),
                          title=f"{report['study']['id']}: score vs pre-training cost"))


def study_pages(env, results_dir: Path, out_dir: Path) -> list[tuple[str, str]]:
    folder = results_dir / "studies"
    paths = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not paths:
        return []
    studies = []
    for path in paths:
        report = json.loads(path.read_text(encoding="utf-8"))
        rows = _rows(report)
        sid = report["study"]["id"]
        href = f"study-{sid}.html"
        html = env.get_template("study.html").render(
            root="", title=f"Study {sid}", report=report, rows=rows, plot=_plot(report, rows),
            cells=[{**CELL_DEFAULTS, **c, "arm": name}
                   for name, arm in report["arms"].items() for c in arm["cells"]],
        )
        (out_dir / href).write_text(html, encoding="utf-8")
        studies.append({"id": sid, "href": href, "description": report["study"]["description"],
                        "complete": report["complete"]})
    index = env.get_template("study.html").render(root="", title="Studies", studies=studies, report=None)
    (out_dir / "studies.html").write_text(index, encoding="utf-8")
    return [("Studies", "studies.html")]

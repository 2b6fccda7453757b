"""The site's two plots: quality against indexing speed per task, and the mean score against
model size on the leaderboard (inline SVG from svgplot)."""

from __future__ import annotations

from typing import Any

from markupsafe import Markup

from benchmark.site.svgplot import Point, RefLine, scatter
from benchmark.site.timing import hardware_label, throughput
from benchmark.site.views import TaskView, family_class


def task_plot(view: TaskView, metric: str, flags: dict | None = None) -> Markup:
    points = []
    for r in view.results:
        speed = throughput(r)
        if speed is None:
            continue
        flag = (flags or {}).get((r.model.name, view.name))
        points.append(Point(
            x=speed, y=r.metrics[metric] * 100, label=r.model.display_name,
            group=family_class(r.model.family), href=f"../models/{r.model.name}.html",
            hollow=flag is not None,
            tooltip=f"{r.model.display_name}: {metric} {r.metrics[metric] * 100:.2f}, "
                    f"{speed:,.1f} docs/s on {hardware_label(r)}"
                    + (f" ({flag})" if flag else ""),
        ))
    return Markup(scatter(points, "corpus documents indexed per second (log scale)",
                          f"{metric} ×100", log_x=True, y_floor=0.0,
                          title=f"{view.display_name}: quality vs indexing speed"))


def size_plot(summary: list, cards: dict[str, Any], metric: str, baseline: str) -> Markup:
    """Mean score vs parameter count, for models with every task only: a mean over fewer tasks
    is not comparable, so drawing it next to the others would mislead."""
    points, refs = [], []
    for s in summary:
        if s.mean is None or not s.complete:
            continue
        card = cards.get(s.name)
        params = getattr(card, "parameters", None) if card else None
        if params:
            points.append(Point(
                x=float(params), y=s.mean * 100, label=s.display_name,
                group=family_class(s.family), href=f"models/{s.name}.html",
                tooltip=f"{s.display_name}: mean {metric} {s.mean * 100:.2f} over all "
                        f"{s.total} tasks, {params / 1e6:,.1f}M parameters",
            ))
        elif s.name == baseline:
            refs.append(RefLine(s.mean * 100, f"{s.display_name} (no parameters)"))
    return Markup(scatter(points, "parameters (log scale)", f"mean {metric} ×100", log_x=True,
                          ref_lines=tuple(refs), title=f"mean {metric} vs model size",
                          y_floor=0.0))

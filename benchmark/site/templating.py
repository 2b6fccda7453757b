"""The Jinja2 environment every page is rendered with: autoescaping (a model name is text, never
markup), the number filters, and the helpers the templates call."""

from __future__ import annotations

from pathlib import Path

import jinja2

from benchmark.site.timing import throughput
from benchmark.site.views import family_class


def jinja_environment(templates: Path) -> jinja2.Environment:
    """One environment for every page, so a number prints the same way wherever it appears."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        autoescape=True,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["x100"] = lambda v: "" if v is None else f"{v * 100:.2f}"
    env.filters["f4"] = lambda v: "" if v is None else f"{v:.4f}"
    env.filters["signed"] = lambda v, scale=100: "" if v is None else f"{v * scale:+.2f}"
    env.filters["pval"] = _fmt_p
    env.filters["num"] = lambda v: "" if v is None else f"{v:,.0f}"
    # a speed keeps one decimal below 10 (3.3 documents/s is not 3)
    env.filters["speed"] = lambda v: "" if v is None else f"{v:,.1f}" if v < 10 else f"{v:,.0f}"
    env.filters["sortval"] = lambda v: "" if v is None else f"{v:.6f}"
    env.globals["family_class"] = family_class
    env.globals["throughput"] = throughput
    env.filters["group_not_run"] = _group_not_run
    return env


def _group_not_run(cells: list) -> list[tuple[str, list]]:
    groups: dict[str, list] = {}
    for cell in cells:
        reason = cell.get("reason") if isinstance(cell, dict) else getattr(cell, "reason", None)
        groups.setdefault(not_run_group(reason), []).append(cell)
    return sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))


def not_run_group(reason: str | None) -> str:
    """A NOT RUN reason reduced to its kind, so 25 cells missing the same thing read as one
    line: which dataset or checkpoint is missing stays in each cell's own entry."""
    text = reason or ""
    if "no folder" in text or "not in the cache" in text or "no dataset folder" in text:
        return "dataset not available here (pass --data-dir with the BEIR folders)"
    if "cannot load checkpoint" in text:
        return "checkpoint weights not available here (offline, not in the cache)"
    if "never released" in text:
        return "the authors never released the weights"
    return text or "not run"


def _fmt_p(p: float | None) -> str:
    if p is None:
        return ""
    return f"{p:.3f}" if p >= 0.001 else f"{p:.0e}"

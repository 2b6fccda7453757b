"""The site's Reproductions page, from the stored reproduction reports
(benchmark.reproduction.reproduce). Listed in benchmark.site.pages.
"""

from __future__ import annotations

from pathlib import Path

import jinja2

from benchmark.core.errors import MaebenchError
from benchmark.reproduction.reproduce import load_reports, load_specs
from benchmark.site.pages import Pages


def reproduction_page(results_dir: Path) -> Pages:
    """The Reproductions entry (always: declared reproductions without a report are listed as
    pending) and reproduction.html."""

    def render(env: jinja2.Environment) -> dict[str, str]:
        return {"reproduction.html": _render(env, results_dir)}

    return Pages(nav=(("Reproductions", "reproduction.html"),), render=render)


def _render(env: jinja2.Environment, results_dir: Path) -> str:
    """reproduction.html from the stored reports, and the specs that have none yet."""
    reports = load_reports(results_dir)
    try:
        specs = load_specs(results_dir)
    except MaebenchError:  # a broken spec must not break the site build
        specs = {}
    return env.get_template("reproduction.html").render(
        title="Reproductions", root="", reports=reports,
        pending=sorted(set(specs) - {r["id"] for r in reports}),
    )

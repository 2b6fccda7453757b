"""Site pages for declared benchmarks: benchmarks.html and one benchmark-<id>.html each, ranked
on full coverage (benchmark.comparison.standings). Listed in benchmark.site.pages.
"""

from __future__ import annotations

from pathlib import Path

import jinja2

from benchmark.catalog.benchmarks import load_benchmarks
from benchmark.comparison.compare import load_table
from benchmark.comparison.standings import standings
from benchmark.site.pages import Pages


def benchmark_pages(results_dir: Path) -> Pages:
    """The Benchmarks entry (always: the declared benchmarks are listed even without results)
    and its pages, ranked when rendered."""

    def render(env: jinja2.Environment) -> dict[str, str]:
        return _render(env, results_dir)

    return Pages(nav=(("Benchmarks", "benchmarks.html"),), render=render)


def _render(env: jinja2.Environment, results_dir: Path) -> dict[str, str]:
    """benchmarks.html and one benchmark-<id>.html per benchmark; a result whose config differs
    from its card (env.globals["cards"]) is marked."""
    table = load_table(results_dir)
    cards = env.globals.get("cards")
    benches = load_benchmarks()
    files: dict[str, str] = {}
    rows = []
    for bench in benches:
        board = standings(bench, table, cards)
        rows.append({"bench": bench, "ranked": sum(1 for s in board if s.rank is not None),
                     "partial": sum(1 for s in board if s.rank is None)})
        files[f"benchmark-{bench.id}.html"] = env.get_template("benchmark.html").render(
            title=bench.title, root="", bench=bench, standings=board,
            tasks=[e.task for e in bench.entries()], marks_config=cards is not None,
        )
    files["benchmarks.html"] = env.get_template("benchmark.html").render(
        title="Benchmarks", root="", bench=None, rows=rows)
    return files

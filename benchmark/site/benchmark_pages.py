"""Site pages for declared benchmarks: benchmarks.html and one benchmark-<id>.html each, ranked
on full coverage (benchmark.comparison.standings). Registered in the leaderboard's EXTRA_PAGES.
"""

from __future__ import annotations

from pathlib import Path

from benchmark.catalog.benchmarks import load_benchmarks
from benchmark.comparison.compare import load_table
from benchmark.comparison.standings import standings


def site_pages(env, results_dir: Path, out_dir: Path) -> list[tuple[str, str]]:
    """leaderboard.EXTRA_PAGES hook: benchmarks.html and one benchmark-<id>.html per benchmark."""
    table = load_table(results_dir)
    cards = env.globals.get("cards")
    benches = load_benchmarks()
    rows = []
    for bench in benches:
        board = standings(bench, table, cards)
        rows.append({"bench": bench, "ranked": sum(1 for s in board if s.rank is not None),
                     "partial": sum(1 for s in board if s.rank is None)})
        html = env.get_template("benchmark.html").render(
            title=bench.title, root="", bench=bench, standings=board,
            tasks=[e.task for e in bench.entries()], marks_config=cards is not None,
        )
        (out_dir / f"benchmark-{bench.id}.html").write_text(html, encoding="utf-8")
    html = env.get_template("benchmark.html").render(title="Benchmarks", root="", bench=None, rows=rows)
    (out_dir / "benchmarks.html").write_text(html, encoding="utf-8")
    return [("Benchmarks", "benchmarks.html")]

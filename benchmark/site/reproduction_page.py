"""The site's Reproductions page, from the stored reproduction reports
(benchmark.reproduction.reproduce). `maebench site` adds it through the leaderboard's
EXTRA_PAGES hook.
"""

from __future__ import annotations

from pathlib import Path

from benchmark.core.errors import MaebenchError
from benchmark.reproduction.reproduce import load_reports, load_specs
from benchmark.site import build


def site_page(env, results_dir: Path, out_dir: Path) -> list[tuple[str, str]]:
    """leaderboard.EXTRA_PAGES hook: render reproduction.html from the stored reports."""
    reports = load_reports(results_dir)
    try:
        specs = load_specs(results_dir)
    except MaebenchError:  # a broken spec must not break the site build
        specs = {}
    html = env.get_template("reproduction.html").render(
        title="Reproductions", root="", reports=reports,
        pending=sorted(set(specs) - {r["id"] for r in reports}),
    )
    (out_dir / "reproduction.html").write_text(html, encoding="utf-8")
    return [("Reproductions", "reproduction.html")]


def register_site_page() -> bool:
    """Add the reproduction page to the leaderboard build (idempotent); False if no leaderboard."""
    pages = getattr(build, "EXTRA_PAGES", None)
    if pages is None:
        return False
    if site_page not in pages:
        pages.append(site_page)
    return True

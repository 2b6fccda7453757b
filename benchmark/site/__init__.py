"""The static leaderboard site, one module per job:

- build: build_site (load, statistics, plots, then every page rendered once and written), the
  leaderboard's own pages, and SITE_PAGES, the one list of the pages after them;
- pages: what a page builder returns (Pages), one navigation for all, the plug-in hook;
- study_pages, benchmark_pages, reproduction_page: the pages other layers contribute;
- views (task views and their comparison family), timing (indexing speeds and whether they are
  plausible), reported (papers' numbers), plots and svgplot, queries (per-query page data);
- templating (the Jinja2 environment), output (the output folder), options (what a build
  takes and returns).

`from benchmark.site import build_site, SiteOptions` is the entry point, the same build as
`maebench site`. The names are loaded on first use, so importing one module of the package (svgplot
for a plot, a page module in a test) does not run the build's imports.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchmark.site.build import BuildReport, SiteError, SiteOptions, build_site

__all__ = ["BuildReport", "SiteError", "SiteOptions", "build_site"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from benchmark.site import build

        return getattr(build, name)
    raise AttributeError(f"module 'benchmark.site' has no attribute '{name}'")

"""The static leaderboard: pages built from the results store (build), inline SVG plots
(svgplot), and the pages other layers contribute (benchmarks, reproductions, studies).

`from benchmark.site import build_site, SiteOptions` is the entry point. The names are loaded on
first use: importing a page module or svgplot must not load Jinja2 and the statistics.
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

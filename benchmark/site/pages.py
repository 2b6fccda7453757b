"""What a page builder returns (Pages), how the builders' pages are rendered with one navigation,
and the hook for plug-ins (PLUGIN_PAGES).

A page builder takes the results folder and returns `Pages`: its navigation entries and the
function that renders its files. The build asks every builder for its entries first, so that
each page's navigation is complete when it is rendered, then renders each builder's files once.
The site's own builders are one list, benchmark.site.build.SITE_PAGES; `maebench site` and
`build_site()` from Python build the same list.

PLUGIN_PAGES is for pages from outside this package: append a builder and its pages follow the
site's own in the navigation. Their templates should extend "base.html" (block `content`;
variables `root` ("" for top-level pages) and `title`); the environment's globals hold `nav`
(the complete navigation) and `cards` (the model cards, by name).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from benchmark.site.options import SiteError

NavEntry = tuple[str, str]  # (label, href relative to the site's root)
Render = Callable[[jinja2.Environment], dict[str, str]]  # env -> {path under the root: html}


def _nothing(env: jinja2.Environment) -> dict[str, str]:
    """The render of a builder with nothing to show."""
    return {}


@dataclass(frozen=True)
class Pages:
    """What one builder adds to the site: its navigation entries (none when it has nothing to
    show) and `render`, called once, with the complete navigation in env.globals["nav"], that
    returns its files as {path under the site's root: html}. The build writes them, so a page
    builder never touches the output folder."""

    nav: tuple[NavEntry, ...] = ()
    render: Render = field(default=_nothing)


PageBuilder = Callable[[Path], Pages]  # results folder -> Pages


# pages from outside the package (see the module docstring)
PLUGIN_PAGES: list[PageBuilder] = []


def with_plugins(builders: Sequence[PageBuilder]) -> list[PageBuilder]:
    """`builders`, then the plug-ins' (PLUGIN_PAGES as it is at build time), in navigation order."""
    return [*builders, *PLUGIN_PAGES]


def render_pages(sections: list[Pages], env: jinja2.Environment) -> dict[str, str]:
    """Every section's files, rendered once with the complete navigation set on `env`; a path
    written by two sections is an error, not a silent overwrite."""
    env.globals["nav"] = [{"label": label, "href": href}
                          for pages in sections for label, href in pages.nav]
    files: dict[str, str] = {}
    for pages in sections:
        for path, html in pages.render(env).items():
            if path in files:
                raise SiteError(f"two page builders write {path}")
            files[path] = html
    return files

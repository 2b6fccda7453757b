"""The static site built from a results folder with fast statistics."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.results import FAST


def build(results_dir: Path, out: Path, **kwargs):
    """`build_site` of `results_dir` into `out` (SiteOptions `kwargs`), 2,000 permutations."""
    from benchmark.site import SiteOptions, build_site

    return build_site(SiteOptions(results_dir=results_dir, out_dir=out, stats=FAST, **kwargs))

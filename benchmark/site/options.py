"""What a site build takes (SiteOptions), what it returns (BuildReport), and the one error it
raises for its own reasons (SiteError): the small types every site module may import, so the
modules that compute the pages need not import the build that calls them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from benchmark.comparison.compare import StatsOptions
from benchmark.core.errors import MaebenchError


class SiteError(MaebenchError):
    """The site cannot be built (output folder, templates)."""


@dataclass
class SiteOptions:
    results_dir: Path
    out_dir: Path
    baseline: str = "bm25"
    top_n: int = 40
    stats: StatsOptions = field(default_factory=StatsOptions)
    models_dir: Path | None = None
    templates_dir: Path | None = None
    static_dir: Path | None = None
    data_dir: Path | None = None  # for query texts and judgements on the per-query pages


@dataclass
class BuildReport:
    out_dir: Path
    pages: list[str]
    timings: dict[str, float]  # wall seconds per phase
    n_results: int
    cpu_timings: dict[str, float] = field(default_factory=dict)  # CPU seconds, all threads

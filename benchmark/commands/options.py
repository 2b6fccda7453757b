"""CLI options more than one command takes, declared once.

`maebench compare` and `maebench site` run the same paired tests (benchmark.comparison
.compare.StatsOptions), so their four statistics options share one flag name, bounds, default and
help here: a bound changed for one command cannot leave the other accepting what it refuses.
Each is a typer Annotated alias; a command writes `permutations: Permutations = PERMUTATIONS`.
Not a command module: the CLI registers only those listed in benchmark.cli.COMMAND_MODULES.
"""

from __future__ import annotations

from typing import Annotated

import typer

PERMUTATIONS = 10_000
BOOTSTRAP = 10_000
SEED = 0
ALPHA = 0.05

Permutations = Annotated[int, typer.Option(min=10_000, help="Sign flips per test.")]
Bootstrap = Annotated[int, typer.Option(min=1000, help="Bootstrap resamples per CI.")]
Seed = Annotated[int, typer.Option(min=0, max=2**32 - 1,
                                   help="Seed of the permutations and resamples.")]
Alpha = Annotated[float, typer.Option(min=0.0, max=1.0, help="Significance level (Holm).")]

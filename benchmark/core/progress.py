"""A spinner naming the running phase (load_model, index, search, evaluate, ...) with its
elapsed seconds, so no phase of a command sits silent for tens of seconds (ranx's first
evaluation compiles numba code for 30-80 s).

Rich's status line is used (rich is already a dependency of typer). Corpus and query encoding
draw their own tqdm bar on large inputs; two live displays on one terminal garble each other,
so the spinner steps aside during those phases. On a non-terminal (a pipe, CI, tests) rich
draws nothing. progress_log shows pre-training's step lines, in the command and in each of its
data-parallel workers alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from benchmark.core.timing import set_phase_listener

# phases that draw their own progress bar on large inputs
OWN_BAR = frozenset({"encode_corpus", "encode_queries"})


@contextmanager
def phase_spinner(console, label: str) -> Iterator[None]:
    """Show `label: <phase>` with a spinner while the block runs (phases from PhaseTimer)."""
    status = console.status(f"{label}: starting", spinner="dots")
    state = {"running": False}

    def listener(name: str, started: bool) -> None:
        if name in OWN_BAR:
            if started and state["running"]:
                status.stop()
                state["running"] = False
            return
        if started:
            status.update(f"{label}: {name}")
            if not state["running"]:
                status.start()
                state["running"] = True

    previous = set_phase_listener(listener)
    status.start()
    state["running"] = True
    try:
        yield
    finally:
        set_phase_listener(previous)
        if state["running"]:
            status.stop()


@contextmanager
def spinner(console, text: str) -> Iterator[None]:
    """A plain spinner for one long step of a command (statistics, rendering)."""
    with console.status(text, spinner="dots"):
        yield


@contextmanager
def progress_log(name: str) -> Iterator[None]:
    """Training logs its progress (step, loss, seconds) at INFO on logger `name`: show those
    lines on stderr without --verbose, plainly (warnings keep the root handler's `WARNING`
    prefix)."""
    import logging
    import sys

    logger = logging.getLogger(name)
    if logging.getLogger().isEnabledFor(logging.INFO):  # --verbose shows them already
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler.addFilter(lambda record: record.levelno < logging.WARNING)
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)

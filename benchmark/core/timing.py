"""Wall time per pipeline phase, recorded in every result's provenance."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# Called with (phase name, True) when a phase starts and (phase name, False) when it ends, so a
# command line can show what is running (a spinner); None: nobody is listening.
PhaseListener = Callable[[str, bool], None]
_listener: PhaseListener | None = None


def set_phase_listener(listener: PhaseListener | None) -> PhaseListener | None:
    """Install `listener` for every PhaseTimer; returns the previous one (to restore it)."""
    global _listener
    previous, _listener = _listener, listener
    return previous


class PhaseTimer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        if _listener is not None:
            _listener(name, True)
        try:
            yield
        finally:
            if _listener is not None:
                _listener(name, False)
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def rounded(self) -> dict[str, float]:
        return {name: round(value, 3) for name, value in self.seconds.items()}

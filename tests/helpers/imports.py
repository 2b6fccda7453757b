"""What a fresh Python process imports (the public API's laziness tests)."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers.paths import REPO


def loaded_by(statement: str, modules: tuple[str, ...]) -> list[str]:
    """Those of `modules` that are in sys.modules after a new interpreter, in the checkout, runs
    `statement` (an import)."""
    code = (f"import sys; {statement}; "
            f"print(','.join(m for m in {modules!r} if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=True)
    return [m for m in proc.stdout.strip().split(",") if m]

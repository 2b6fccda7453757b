"""Shared validation of untrusted YAML: one-line errors, no native crash on deep nesting."""

from __future__ import annotations

import subprocess
import sys

import pytest

from benchmark.catalog.registry import parse_card
from benchmark.core.errors import RegistryError
from tests.helpers.paths import REPO


def test_deeply_nested_yaml_is_refused_in_process():
    with pytest.raises(RegistryError, match="nested deeper than 64 levels"):
        parse_card("name: " + "[" * 30000 + "]" * 30000, "evil.yaml")


@pytest.mark.slow
def test_deeply_nested_card_gives_an_error_line_not_a_segfault(tmp_path):
    """libyaml recurses natively: without the depth check this process dies with SIGSEGV."""
    card = tmp_path / "evil.yaml"
    card.write_text("name: " + "[" * 30000 + "]" * 30000)
    code = (
        "import sys; from benchmark.catalog.registry import load_card; from benchmark.core.errors import *\n"
        "try: load_card(__import__('pathlib').Path(sys.argv[1]))\n"
        "except MaebenchError as e: print('error:', e); sys.exit(2)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(card)], capture_output=True, text=True,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 2 and "nested deeper" in proc.stdout


def test_many_brackets_at_shallow_depth_still_parse():
    """Above the cheap threshold the event scan runs; shallow nesting passes it."""
    brackets = '"' + "[x] " * 300 + '"'
    text = (REPO / "models" / "bm25.yaml").read_text() + f"notes: {brackets}\n"
    assert parse_card(text, "bm25.yaml").notes.count("[x]") == 300

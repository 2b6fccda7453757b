"""The test suite's own layout (issue 29): no test module (tests/test_*.py) imports another test
module or conftest.py; what they share lives in tests/helpers/ (or is a conftest fixture), and
bench/ imports from there too."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers.paths import REPO

TESTS = REPO / "tests"


def _imported(source: str, package: str) -> list[tuple[int, str]]:
    """Every module an `import` or `from ... import` anywhere in `source` may name, as a dotted
    name (relative imports resolved against `package`), with its line."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return found


def _test_module_imports(source: str, package: str) -> list[str]:
    """`line: tests.x` for each import of a test module or of conftest."""
    bad = []
    for line, name in _imported(source, package):
        parts = name.split(".")
        if parts[0] == "tests" and len(parts) > 1 and (
                parts[1].startswith("test_") or parts[1] == "conftest"):
            bad.append(f"{line}: {'.'.join(parts[:2])}")
    return bad


def _check(paths: list[Path]) -> list[str]:
    bad = []
    for path in paths:
        package = ".".join(path.relative_to(REPO).parent.parts)
        bad += [f"{path.relative_to(REPO)}:{entry}"
                for entry in _test_module_imports(path.read_text(encoding="utf-8"), package)]
    return bad


def test_no_test_module_imports_another_test_module() -> None:
    modules = sorted(TESTS.glob("test_*.py"))
    assert len(modules) > 50
    bad = _check(modules)
    assert not bad, "move what is shared to tests/helpers/ or a conftest fixture:\n" + "\n".join(bad)


def test_helpers_conftest_and_bench_import_no_test_module() -> None:
    files = [*sorted((TESTS / "helpers").glob("*.py")), TESTS / "conftest.py",
             *sorted((REPO / "bench").glob("*.py"))]
    assert not _check(files)


def test_the_check_sees_every_import_form() -> None:
    forms = ["from tests.test_site import x", "import tests.test_site", "from tests import test_site",
             "from . import test_site", "from .test_site import x", "from tests.conftest import REPO",
             "import tests.test_site as s", "def f():\n    from tests.test_site import x\n"]
    for form in forms:
        assert _test_module_imports(form, "tests"), form
    assert _test_module_imports("from .. import test_site", "tests.helpers")
    allowed = "from tests.helpers.paths import REPO\nfrom tests import helpers\nfrom . import paths\n"
    assert _test_module_imports(allowed, "tests.helpers") == []

"""The package's layers, and the test that keeps them: no import cycle, no upward import.

LAYERS is the one statement of the order (README's Layout section describes it). Each
sub-package of benchmark/ is one layer; a module may import from its own layer and from the
layers before it, never from one after it, and no chain of imports may lead back to where it
started. The graph is built from the source with `ast`, so it sees what a reader sees:

- every `import` and `from ... import`, at module level or inside a function (a lazy import is
  still a dependency), under `if TYPE_CHECKING:` too, relative imports resolved;
- `from benchmark.pkg import name` where `name` is a submodule counts as importing it;
- a string that is exactly a submodule's dotted name counts as importing it (importlib);
- the package root, `benchmark/__init__.py`, is the public API: the top layer.

Importing a submodule also runs its parents' __init__ files; those hold docstrings (and the
retriever factory), so they are not added as edges of their own.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers.paths import REPO

PACKAGE = "benchmark"

# Lowest first. The flow of a result is card + task -> retriever -> run -> evaluation -> result ->
# comparison -> site; the layers follow it, except that the metrics and significance tests
# (evaluation) are pure functions the catalog already names, so they sit below the catalog.
LAYERS = (
    "core",          # errors, paths, safe reading, validation, devices, timing, provenance, files
    "evaluation",    # canonical ranking + ranx metrics, paired significance tests
    "catalog",       # tasks, model cards (registry), declared benchmarks, weights, checkpoint configs
    "datasets",      # BEIR folders, streamed corpora, TREC files, downloads
    "embeddings",    # the embedding store: keys, shards, corpus sources
    "retrievers",    # BM25, dense (encoders, backends, engines, search), the mteb adapter
    "results",       # the results store: schema, identity, result_store, run files, reported, MTEB files
    "pipeline",      # card + task -> stored result
    "comparison",    # paired tests between stored results, benchmark standings
    "submission",    # bundles out and in
    "reproduction",  # paper tables re-run and judged
    "training",      # fine-tuning, pre-training objectives, backbones
    "studies",       # controlled comparisons of objectives
    "site",          # the static leaderboard
    "commands",      # the CLI's sub-commands
    "cli",           # the `maebench` entry point
    "",              # benchmark/__init__.py: the public API
)


def module_names(root: Path, package: str = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under root/package."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool,
             modules: dict[str, Path]) -> list[str]:
    """What one import statement imports: each name that is a submodule, else the module the
    names come from (relative imports resolved against `module`)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    return [f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names]


def import_graph(root: Path, package: str = PACKAGE) -> dict[str, set[str]]:
    """module -> the package's modules it imports (see the module docstring for what counts)."""
    modules = module_names(root, package)

    def known(name: str) -> str | None:
        parts = name.split(".")
        while parts and ".".join(parts) not in modules:
            parts.pop()
        return ".".join(parts) if parts else None

    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names: list[str] = []
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = _targets(node, module, path.name == "__init__.py", modules)
            elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
                  and "." in node.value and node.value in modules):  # not the word "benchmark"
                names = [node.value]
            for name in names:
                target = known(name)
                if target is not None and target != module:
                    edges.add(target)
        graph[module] = edges
    return graph


def layer_of(module: str, package: str = PACKAGE) -> str:
    return module.split(".")[1] if module != package else ""


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component of more than one module, each as one cycle through
    it (a readable path a -> b -> ... -> a), in sorted order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(start: str) -> None:  # iterative Tarjan: no recursion limit on a long chain
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return [_cycle_through(graph, component) for component in sorted(components)]


def _cycle_through(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest path from the component's first module back to itself, inside it."""
    members, start = set(component), component[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & members):
                if child == start:
                    return paths[node] + [start]
                if child not in paths:
                    paths[child] = paths[node] + [child]
                    following.append(child)
        frontier = following
    return component  # unreachable for a strongly connected component


def upward_imports(graph: dict[str, set[str]], layers: tuple[str, ...] = LAYERS) -> list[str]:
    """'a -> b (layer x below layer y)' for every import of a module in a later layer."""
    rank = {layer: i for i, layer in enumerate(layers)}
    found = []
    for module in sorted(graph):
        for target in sorted(graph[module]):
            if rank[layer_of(target)] > rank[layer_of(module)]:
                found.append(f"{module} -> {target} ({layer_of(module) or 'api'} is below "
                             f"{layer_of(target) or 'api'})")
    return found


def _format_cycles(cycles: list[list[str]]) -> str:
    return "\n".join(" -> ".join(cycle) for cycle in cycles)


# --------------------------------------------------------------------------- the real package


def test_every_module_belongs_to_a_declared_layer():
    unknown = sorted({layer_of(m) for m in module_names(REPO)} - set(LAYERS))
    assert not unknown, f"packages missing from LAYERS (add each where its imports put it): {unknown}"


@pytest.mark.slow
def test_the_package_has_no_import_cycle():
    cycles = find_cycles(import_graph(REPO))
    assert not cycles, "import cycles (move the shared code to its owner):\n" + _format_cycles(cycles)


@pytest.mark.slow
def test_no_module_imports_from_a_layer_above_it():
    upward = upward_imports(import_graph(REPO))
    assert not upward, "upward imports (move the code down, or pass it in):\n" + "\n".join(upward)


# --------------------------------------------------------------------------- the checks themselves


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / PACKAGE / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


CLEAN = {
    "__init__.py": "",
    "core/__init__.py": "",
    "core/errors.py": "class MaebenchError(Exception): ...\n",
    "catalog/__init__.py": "",
    "catalog/tasks.py": "from benchmark.core.errors import MaebenchError\n",
    "results/__init__.py": "",
    "results/result_store.py": "from ..catalog import tasks\n",
}


def test_a_clean_tree_passes(tmp_path: Path):
    graph = import_graph(_tree(tmp_path, CLEAN))
    assert graph["benchmark.results.result_store"] == {"benchmark.catalog.tasks"}  # relative, submodule
    assert find_cycles(graph) == [] and upward_imports(graph) == []


@pytest.mark.parametrize("planted", [
    "import benchmark.results.result_store\n",  # top level
    "def later():\n    from benchmark.results.result_store import x\n",  # lazy, inside a function
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from benchmark.results import result_store\n",
    "import importlib\nSTORE = importlib.import_module('benchmark.results.result_store')\n",
])
def test_a_planted_cycle_and_upward_import_are_found(tmp_path: Path, planted: str):
    files = {**CLEAN, "catalog/tasks.py": CLEAN["catalog/tasks.py"] + planted}
    graph = import_graph(_tree(tmp_path, files))
    assert find_cycles(graph) == [["benchmark.catalog.tasks", "benchmark.results.result_store",
                                   "benchmark.catalog.tasks"]]
    assert upward_imports(graph, ("core", "catalog", "results", "")) == [
        "benchmark.catalog.tasks -> benchmark.results.result_store (catalog is below results)"]


def test_a_cycle_inside_one_layer_is_found(tmp_path: Path):
    files = {**CLEAN, "core/paths.py": "from benchmark.core import errors\n",
             "core/errors.py": "def f():\n    from benchmark.core.paths import x\n"}
    cycles = find_cycles(import_graph(_tree(tmp_path, files)))
    assert cycles == [["benchmark.core.errors", "benchmark.core.paths", "benchmark.core.errors"]]

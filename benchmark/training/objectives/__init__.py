"""The pre-training objectives, one module each, behind benchmark.training.objectives.base, plus a
researcher's own objectives, without editing maebench:

- a file: `--objective path/to/file.py:ClassName` (or the same string as a study arm's
  objective); recorded on the card as `file.py:ClassName`;
- an installed package that declares an entry point in the group `maebench.objectives`
  (`name = "module:Class"` in its pyproject's [project.entry-points."maebench.objectives"]);
  recorded by its entry-point name.

Either way the class must subclass base.Objective and implement corrupt(pairs, rng) and
forward(batch). Built-in names always win over an entry point of the same name, so an installed
package cannot silently change what "retromae" means on a card.

Looked up by name so `maebench --help` imports no torch (a plugin file imports torch when it is
loaded, since it subclasses base.Objective); every failure is a one-line MaebenchError.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmark.core.errors import MaebenchError

OBJECTIVES = {
    "mlm": "mlm:MLM",
    "condenser": "condenser:Condenser",
    "cocondenser": "cocondenser:CoCondenser",
    "retromae": "retromae:RetroMAE",
    "dupmae": "dupmae:DupMAE",
    "cotmae": "cotmae:CoTMAE",
    "bowpred": "bowpred:BowPred",
    "simlm": "simlm:SimLM",
}
ENTRY_POINT_GROUP = "maebench.objectives"


@dataclass(frozen=True)
class Plugin:
    """An objective from outside maebench, once loaded: its class and where it came from (the
    recipe's sources record `origin`, so a card says which code trained it)."""

    name: str  # what the card records: "file.py:ClassName" or the entry-point name
    cls: type
    origin: str


_PLUGINS: dict[str, Plugin] = {}  # by card name and by the spec it was loaded from


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _entry_points() -> dict:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name not in OBJECTIVES}


def is_file_spec(name: str) -> bool:
    """`path/to/file.py:ClassName`."""
    path, sep, cls = name.rpartition(":")
    return bool(sep and cls and path.endswith(".py"))


def _validate_class(cls: object, attribute: str, where: str, card_name: str) -> type:
    from benchmark.training.objectives.base import Objective

    if not (isinstance(cls, type) and issubclass(cls, Objective)):
        what = (f"it derives from {', '.join(b.__name__ for b in cls.__bases__)}"
                if isinstance(cls, type) else f"it is a {type(cls).__name__}")
        raise MaebenchError(f"{where}: '{attribute}' is not a subclass of "
                            f"benchmark.training.objectives.base.Objective ({what})")
    missing = [m for m in ("corrupt", "forward") if getattr(cls, m) is getattr(Objective, m)]
    if missing:
        raise MaebenchError(f"{where}: class '{attribute}' does not implement "
                            f"{' and '.join(missing)} (see benchmark/training/objectives/mlm.py)")
    if not isinstance(getattr(cls, "name", None), str):
        cls.name = card_name  # base.Objective's messages name the objective
    return cls


def _load_file(spec: str) -> Plugin:
    path_text, _, attribute = spec.rpartition(":")
    path = Path(path_text).expanduser()
    where = f"objective plugin {path_text}"
    if not path.is_file():
        raise MaebenchError(f"{where}: no such file")
    resolved = path.resolve()
    data = resolved.read_bytes()
    # one module per file (by absolute path): two plugins named objective.py do not collide
    module_name = "maebench_objective_" + hashlib.sha256(str(resolved).encode()).hexdigest()[:16]
    loader_spec = importlib.util.spec_from_file_location(module_name, resolved)
    if loader_spec is None or loader_spec.loader is None:
        raise MaebenchError(f"{where}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module  # dataclasses, pickling and typing look modules up here
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:  # the researcher's code: any failure is reported, not a traceback
        sys.modules.pop(module_name, None)
        raise MaebenchError(f"{where}: importing it failed: {_one_line(exc)}") from exc
    if not hasattr(module, attribute):
        from benchmark.training.objectives.base import Objective

        found = sorted(k for k, v in vars(module).items() if isinstance(v, type)
                       and issubclass(v, Objective) and v is not Objective)
        raise MaebenchError(f"{where}: no class '{attribute}' (Objective subclasses there: "
                            f"{', '.join(found) or 'none'})")
    name = f"{path.name}:{attribute}"
    if name in _PLUGINS and not _PLUGINS[name].origin.startswith(f"file {resolved} "):
        name = spec  # another file of the same name is loaded already: keep the two apart
    cls = _validate_class(getattr(module, attribute), attribute, where, name)
    digest = hashlib.sha256(data).hexdigest()
    return Plugin(name, cls, f"file {resolved} (sha256 {digest}), class {attribute}")


def _load_entry_point(name: str, entry) -> Plugin:
    where = f"objective entry point '{name}' ({entry.value})"
    try:
        cls = entry.load()
    except Exception as exc:  # the package's code: any failure is reported, not a traceback
        raise MaebenchError(f"{where}: loading it failed: {_one_line(exc)}") from exc
    _validate_class(cls, entry.value, where, name)
    dist = getattr(entry, "dist", None)
    package = f", distribution {dist.name} {dist.version}" if dist is not None else ""
    return Plugin(name, cls, f"entry point {ENTRY_POINT_GROUP} '{name}' = {entry.value}{package}")


def _plugin(name: str) -> Plugin | None:
    """The loaded plugin for a card name or a spec, loading it on first use; None for a name
    that is neither a file spec nor an installed entry point."""
    if name in _PLUGINS:
        return _PLUGINS[name]
    if is_file_spec(name):
        plugin = _load_file(name)
    else:
        entries = _entry_points()
        if name not in entries:
            return None
        plugin = _load_entry_point(name, entries[name])
    _PLUGINS[name] = _PLUGINS[plugin.name] = plugin
    return plugin


def check_objective(name: str) -> str:
    """The name a card records for `name`: a built-in name as is, a plugin's card name
    (`file.py:ClassName`, or the entry-point name). Unknown names, and plugins that do not load
    or are not Objectives, are one-line errors."""
    if name in OBJECTIVES:
        return name
    plugin = _plugin(name)
    if plugin is None:
        known = [*OBJECTIVES, *sorted(_entry_points())]
        hint = "; a plugin file is path/to/file.py:ClassName" if ":" in name else ""
        raise MaebenchError(f"unknown objective '{name}' (known: {', '.join(known)}){hint}")
    return plugin.name


def is_plugin(name: str) -> bool:
    return check_objective(name) not in OBJECTIVES


def plugin_origin(name: str) -> str:
    """Where a plugin objective's code came from (file and sha256, or entry point and package)."""
    plugin = _plugin(check_objective(name))
    if plugin is None:
        raise MaebenchError(f"'{name}' is a built-in objective, not a plugin")
    return plugin.origin


def objective_class(name: str):
    canonical = check_objective(name)
    if canonical not in OBJECTIVES:
        return _PLUGINS[canonical].cls
    module, cls = OBJECTIVES[canonical].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)

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
    file: str | None = None  # the resolved file of a file plugin (None: an entry point)


# Loaded plugins, by (resolved file, attribute) for a file plugin and by card name for every
# plugin. A file spec that names an existing file is always looked up by the file it resolves
# to, never by its spelling: `plugins/obj.py:C` and `obj.py:C` are two plugins, and the second
# must not get the first's class (and its card the first's code and digest) because the first's
# card name happens to be `obj.py:C`.
_PLUGINS: dict[str | tuple[str, str], Plugin] = {}
MAX_PLUGIN_BYTES = 16 << 20  # a plugin source file larger than this is not a plugin


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


def _card_name(spec: str, resolved: Path, attribute: str) -> str:
    """`file.py:Class` when that short name is unambiguous, else the spec as given: the short
    name must not be another loaded plugin's, nor name, read as a path from here, another file
    (it is looked up again by the steps that follow, and must find this file)."""
    short = f"{resolved.name}:{attribute}"
    taken = _PLUGINS.get(short)
    if taken is not None and taken.file != str(resolved):
        return spec
    local = Path(resolved.name)
    if local.is_file() and local.resolve() != resolved:
        return spec
    return short


def _load_file(spec: str) -> Plugin:
    from benchmark.core.paths import read_bounded

    path_text, _, attribute = spec.rpartition(":")
    path = Path(path_text).expanduser()
    where = f"objective plugin {path_text}"
    if not path.exists():
        raise MaebenchError(f"{where}: no such file")
    resolved = path.resolve()
    # read once, bounded (a FIFO or /dev/zero is refused at once), and run exactly these bytes:
    # the digest a card records is the digest of the code that trained it
    data = read_bounded(resolved, MAX_PLUGIN_BYTES, "objective plugin file", error=MaebenchError)
    # one module per file (by absolute path): two plugins named objective.py do not collide
    module_name = "maebench_objective_" + hashlib.sha256(str(resolved).encode()).hexdigest()[:16]
    loader_spec = importlib.util.spec_from_file_location(module_name, resolved)
    if loader_spec is None or loader_spec.loader is None:
        raise MaebenchError(f"{where}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module  # dataclasses, pickling and typing look modules up here
    try:
        exec(compile(data, str(resolved), "exec"), module.__dict__)  # noqa: S102 - the user named it
    except Exception as exc:  # the researcher's code: any failure is reported, not a traceback
        sys.modules.pop(module_name, None)
        raise MaebenchError(f"{where}: importing it failed: {_one_line(exc)}") from exc
    if not hasattr(module, attribute):
        from benchmark.training.objectives.base import Objective

        found = sorted(k for k, v in vars(module).items() if isinstance(v, type)
                       and issubclass(v, Objective) and v is not Objective)
        raise MaebenchError(f"{where}: no class '{attribute}' (Objective subclasses there: "
                            f"{', '.join(found) or 'none'})")
    name = _card_name(spec, resolved, attribute)
    cls = _validate_class(getattr(module, attribute), attribute, where, name)
    digest = hashlib.sha256(data).hexdigest()
    return Plugin(name, cls, f"file {resolved} (sha256 {digest}), class {attribute}", str(resolved))


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


def _file_key(name: str) -> tuple[str, str] | None:
    """(resolved file, attribute) of a file spec that names an existing file, else None."""
    if not is_file_spec(name):
        return None
    path_text, _, attribute = name.rpartition(":")
    path = Path(path_text).expanduser()
    return (str(path.resolve()), attribute) if path.exists() else None


def _plugin(name: str) -> Plugin | None:
    """The loaded plugin for a spec or a card name, loading it on first use; None for a name
    that is neither a file spec nor an installed entry point. A spec naming an existing file
    means that file (by its resolved path); a card name this process gave out stands for its
    plugin; anything else is loaded from scratch."""
    key = _file_key(name)
    if key is not None:
        if key not in _PLUGINS:
            plugin = _load_file(name)
            _PLUGINS[key] = plugin
            _PLUGINS.setdefault(plugin.name, plugin)
        return _PLUGINS[key]
    if name in _PLUGINS:
        return _PLUGINS[name]
    if is_file_spec(name):
        _load_file(name)  # no such file: its one-line error
        return None
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


# --------------------------------------------------------------------------- checked calls
#
# The pre-training loop calls an objective through these two adapters. A plugin's code is the
# researcher's: whatever it raises or returns is reported as one line naming the plugin and its
# file, never as maebench's own bug (a traceback, exit 70). A built-in's exceptions are
# maebench's, and propagate unchanged. For every objective a loss that is not finite stops the
# run: NaN weights trained on would otherwise be published under a card claiming a trained model.


def _unwrapped(model):
    """The objective inside what accelerate / DDP / torch.compile wrap it in."""
    for _ in range(8):
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if inner is None:
            break
        model = inner
    return model


def plugin_of(model) -> Plugin | None:
    """The plugin whose class `model` (an objective, wrapped or not) is; None for a built-in."""
    cls = type(_unwrapped(model))
    return next((p for p in _PLUGINS.values() if p.cls is cls), None)


def describe(model) -> str:
    """`objective plugin file.py:Class (file /abs/file.py)`, `objective plugin <entry point>
    (entry point ...)`, or `objective 'mlm'` for a built-in."""
    plugin = plugin_of(model)
    if plugin is None:
        return f"objective '{getattr(_unwrapped(model), 'name', type(_unwrapped(model)).__name__)}'"
    where = f"file {plugin.file}" if plugin.file else plugin.origin
    return f"objective plugin {plugin.name} ({where})"


def _kind(value: object) -> str:
    import torch

    if isinstance(value, torch.Tensor):
        return f"a {str(value.dtype).removeprefix('torch.')} tensor of shape {tuple(value.shape)}"
    if isinstance(value, tuple | list):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


def _finite_number(value: object) -> float | None:
    """A part's value as a float (a Python number or a one-element tensor), None if it is not one."""
    import math

    import torch

    if isinstance(value, bool):
        return None
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_complex():
            return None
        value = float(value.detach().float().cpu())
    if not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def check_loss(loss, who: str):
    """`loss` itself when it is a finite one-element floating tensor, else a one-line error
    naming `who` (the objective): a NaN or infinite loss stops the run before its step."""
    import math

    import torch

    if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not loss.is_floating_point():
        raise MaebenchError(f"{who}: forward must return (loss, parts) with the loss a one-element "
                            f"floating tensor; its loss is {_kind(loss)}")
    value = float(loss.detach().float().cpu())
    if not math.isfinite(value):
        raise MaebenchError(f"{who}: the loss is {value} (not finite); training stopped, no card "
                            "written (a lower learning_rate, or a fix to the loss, is needed)")
    return loss


def checked_forward(objective, batch) -> tuple[object, dict[str, float]]:
    """`objective(batch)` (call it with the model as the training loop holds it, wrapped or not)
    checked: returns (loss tensor, parts as {name: float}). A plugin whose forward raises, or
    returns anything but a (finite one-element loss tensor, {str: finite number}) pair, is one
    MaebenchError naming the plugin and its file; any objective's non-finite loss is one too."""
    plugin = plugin_of(objective)
    who = describe(objective)
    if plugin is None:
        loss, parts = objective(batch)  # maebench's own code: its bugs stay bugs
        return check_loss(loss, who), {str(k): float(v) for k, v in parts.items()}
    try:
        out = objective(batch)
    except MaebenchError as exc:
        raise MaebenchError(f"{who}: {exc}") from exc
    except Exception as exc:  # the plugin's code: reported, not a traceback
        raise MaebenchError(f"{who}: forward raised {_one_line(exc)}") from exc
    if not (isinstance(out, tuple | list) and len(out) == 2):
        raise MaebenchError(f"{who}: forward must return a (loss tensor, parts dict) pair; "
                            f"it returned {_kind(out)}")
    loss, parts = out
    check_loss(loss, who)
    import torch

    if torch.is_grad_enabled() and not loss.requires_grad:  # backward() would fail in the loop
        raise MaebenchError(f"{who}: its loss depends on no trainable weight (requires_grad is "
                            "False: computed under no_grad, or detached)")
    if not isinstance(parts, dict):
        raise MaebenchError(f"{who}: forward's second value must be a dict of named loss terms; "
                            f"it is {_kind(parts)}")
    numbers: dict[str, float] = {}
    for key, value in parts.items():
        number = _finite_number(value)
        if not isinstance(key, str) or number is None:
            raise MaebenchError(f"{who}: forward's parts must map names to finite numbers; "
                                f"{str(key)[:40]!r} is {_kind(value)} ({str(value)[:40]})")
        numbers[key] = number
    return loss, numbers


def checked_corrupt(objective, pairs, rng) -> dict:
    """`objective.corrupt(pairs, rng)` (the unwrapped objective) checked the same way: a plugin's
    corrupt must return a dict of named tensors with an `attention_mask` (the loop counts
    tokens with it and moves every value to the device)."""
    import torch

    plugin = plugin_of(objective)
    if plugin is None:
        return objective.corrupt(pairs, rng)
    who = describe(objective)
    try:
        batch = objective.corrupt(pairs, rng)
    except MaebenchError as exc:
        raise MaebenchError(f"{who}: {exc}") from exc
    except Exception as exc:  # the plugin's code
        raise MaebenchError(f"{who}: corrupt raised {_one_line(exc)}") from exc
    if not isinstance(batch, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in batch.items()):
        raise MaebenchError(f"{who}: corrupt must return a dict of named tensors; it returned "
                            f"{_kind(batch)}")
    if "attention_mask" not in batch:
        raise MaebenchError(f"{who}: corrupt's batch has no 'attention_mask' tensor "
                            f"(it has: {', '.join(sorted(batch)) or 'nothing'})")
    return batch

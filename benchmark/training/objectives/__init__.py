"""The pre-training objectives, one module each, behind benchmark.training.objectives.base.

Looked up by name so `maebench --help` imports no torch; unknown names are a one-line error.
"""

from __future__ import annotations

import importlib

from benchmark.errors import MaebenchError

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


def check_objective(name: str) -> str:
    if name not in OBJECTIVES:
        raise MaebenchError(f"unknown objective '{name}' (known: {', '.join(OBJECTIVES)})")
    return name


def objective_class(name: str):
    module, cls = OBJECTIVES[check_objective(name)].split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)

"""A tiny study spec on the embedded tiny task."""

from __future__ import annotations

from pathlib import Path

import yaml

SPEC = {
    "id": "tiny-study", "description": "test", "init": "tiny-init",
    "corpus": "tiny", "budget_tokens": 512, "pretrain_overrides": {"batch_size": 4, "max_length": 32},
    "arms": [{"name": "base", "objective": None}, {"name": "mlm", "objective": "mlm"},
             {"name": "bow", "objective": "bowpred"}],
    "seeds": [0, 1], "finetune": {"task": "tiny", "recipe": "standard-cpu"},
    "evaluate": ["tiny"], "baseline_arm": "base",
    # random tiny models: their [CLS] vectors are near-identical; collapse has its own tests
    "collapse_cosine": 1.0, "collapse_overlap": 1.0,
}


def write_spec(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({**SPEC, **changes}))
    return path

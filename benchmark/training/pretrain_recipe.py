"""Pre-training recipes as data (benchmark/data/pretrain_recipes/<objective>.yaml), the budget
that scales them, and the resolved values a card records.

A recipe holds the published values with their sources. `--budget` fixes the number of
optimizer steps (given directly, or tokens / nominal tokens per step); warmup keeps its
published fraction of the schedule, so the same recipe runs at any scale.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from benchmark.core.errors import MaebenchError
from benchmark.core.paths import EMBEDDED_DATA_DIR
from benchmark.core.validation import read_yaml_text, validate, validate_yaml

RECIPES_DIR = EMBEDDED_DATA_DIR / "pretrain_recipes"
# The most optimizer steps any budget, warm-up or schedule may name: a billion steps is years of
# training on any machine; a bound keeps a 400-digit budget from reaching int(inf) or a scheduler
# table of that length, and makes it one line instead.
MAX_STEPS = 10**9
MAX_ACCUMULATION = 1 << 16  # gradient accumulation steps per optimizer step
# Loss weights and coefficients: finite and at most this (the published ones are 0.1..1).
MAX_COEF = 1000.0


class PretrainRecipe(BaseModel):
    """One objective's pre-training values. Every number is finite (`inf`/`nan` from a recipe
    file, a plugin's `recipe` or `--set` would train to NaN weights and still write a card) and
    range-checked, so a bad value is a one-line error before any model is loaded."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    objective: str
    encoder_mask: float = Field(gt=0, lt=1)
    decoder_mask: float | None = Field(default=None, gt=0, lt=1)
    decoder_layers: int | None = Field(default=None, ge=1, le=48)
    skip_from: int | None = Field(default=None, ge=1, le=48)
    mask_samples: int | None = Field(default=None, ge=1, le=8192)
    bow_weight: float | None = Field(default=None, ge=0, le=MAX_COEF)
    bow_decay_to: float | None = Field(default=None, ge=0, le=MAX_COEF)
    head_mlm_coef: float | None = Field(default=None, ge=0, le=MAX_COEF)
    generator: str | None = None
    generator_weight: float | None = Field(default=None, ge=0, le=MAX_COEF)
    learning_rate: float = Field(gt=0, le=1)
    head_warmup_steps: int | None = Field(
        default=None, ge=0, le=MAX_STEPS, description="steps training a new MLM head/decoders with "
        "the encoder frozen first; default: 0 when the init has a trained head, else min(200, steps)")
    warmup_ratio: float | None = Field(default=None, ge=0, lt=1)
    warmup_steps: int | None = Field(default=None, ge=0, le=MAX_STEPS)
    weight_decay: float = Field(ge=0, le=1)
    scheduler: Literal["linear", "cosine", "constant"]
    batch_size: int = Field(gt=0, le=1 << 20,
                            description="spans per optimizer step (both spans of each pair)")
    max_length: int = Field(ge=16, le=8192)
    packing: bool = Field(
        default=True, description="steps of batch_size x max_length REAL tokens: a document cut into "
        "spans of about equal length, batches of similar lengths (training.corpus.PackedPairStream); "
        "false: batch_size spans padded to the longest (what runs before December 2026 did)")
    precision: Literal["no", "fp16", "bf16"] = "no"
    published_steps: int | None = Field(default=None, gt=0, le=MAX_STEPS)
    published_schedule: str
    sources: list[str]
    notes: str | None = None


def load_recipe(objective: str, path: Path | None = None) -> PretrainRecipe:
    """The recipe for `objective`: `path` when given, else the bundled one of a built-in
    objective, or a plugin objective's (see plugin_recipe)."""
    from benchmark.training.objectives import OBJECTIVES, check_objective

    if objective not in OBJECTIVES and check_objective(objective) not in OBJECTIVES:
        return plugin_recipe(objective, path)
    path = path or RECIPES_DIR / f"{objective}.yaml"
    if not path.is_file():
        raise MaebenchError(f"no pre-training recipe {path}")
    recipe = validate_yaml(read_yaml_text(path, MaebenchError), PretrainRecipe, str(path),
                           MaebenchError, "a pre-training recipe")
    if recipe.objective != objective:
        raise MaebenchError(f"{path}: recipe is for '{recipe.objective}', not '{objective}'")
    return recipe


def plugin_recipe(objective: str, path: Path | None = None) -> PretrainRecipe:
    """A plugin objective's recipe. From `path` (its `objective:` may be the spec or the card
    name), else from the class attribute `recipe`, a dict of PretrainRecipe fields laid over the
    mlm recipe's values (so a plugin states only what differs from plain MLM); with no `recipe`
    attribute, the mlm recipe's values. Either way `sources` gains where the objective's code
    came from (file and sha256, or entry point and package), which the card records."""
    from benchmark.training.objectives import check_objective, objective_class, plugin_origin

    name = check_objective(objective)
    if path is not None:
        if not path.is_file():
            raise MaebenchError(f"no pre-training recipe {path}")
        recipe = validate_yaml(read_yaml_text(path, MaebenchError), PretrainRecipe, str(path),
                               MaebenchError, "a pre-training recipe")
        if recipe.objective not in (objective, name):
            raise MaebenchError(f"{path}: recipe is for '{recipe.objective}', not '{name}'")
        raw = recipe.model_dump()
    else:
        declared = getattr(objective_class(name), "recipe", None)
        if declared is not None and not isinstance(declared, dict):
            raise MaebenchError(f"objective plugin {name}: its `recipe` attribute must be a dict of "
                                f"pre-training recipe fields (it is a {type(declared).__name__})")
        raw = load_recipe("mlm").model_dump()
        if declared is None:
            raw.update(published_schedule="none: the plugin sets no `recipe`; maebench's mlm recipe "
                       "values", notes=None)
        else:
            raw.update(published_schedule="as the plugin's `recipe` states it; unset fields: maebench's "
                       "mlm recipe values", sources=[], notes=None)
            raw.update(declared)
    raw["objective"] = name
    sources = raw.get("sources") or []
    if isinstance(sources, list | tuple):  # anything else fails validation below, in one line
        raw["sources"] = [*sources, f"objective code: {plugin_origin(name)}"]
    return validate(raw, PretrainRecipe, f"objective plugin {name}: recipe", MaebenchError)


def apply_overrides(recipe: PretrainRecipe, overrides: dict[str, str] | None) -> PretrainRecipe:
    """key=value strings (from --set or a study spec) validated against the schema."""
    if not overrides:
        return recipe
    raw = recipe.model_dump()
    for key, value in overrides.items():
        if key not in PretrainRecipe.model_fields or key in ("objective", "sources"):
            raise MaebenchError(f"unknown recipe setting '{key}' (settable: "
                                f"{', '.join(k for k in PretrainRecipe.model_fields if k != 'sources')})")
        raw[key] = value
    return validate(raw, PretrainRecipe, "recipe overrides", MaebenchError)


_BUDGET = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kKmMgG]?)\s*(steps?|tokens?)?\s*$")
_SCALE = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}


def parse_budget(text: str) -> tuple[float, str]:
    """'300steps', '300 steps', '1.2M tokens', '2M' (tokens) -> (amount, 'steps'|'tokens')."""
    match = _BUDGET.match(str(text))
    if not match:
        raise MaebenchError(f"budget '{_short(text)}' is not '<number>[k|M|G] steps' or "
                            "'<number>[k|M|G] tokens'")
    amount = float(match.group(1)) * _SCALE[match.group(2).lower()]
    if not math.isfinite(amount):  # float() of a 400-digit number is inf, not an error
        raise MaebenchError(f"budget '{_short(text)}' is too large to be a number of steps or tokens")
    unit = "steps" if (match.group(3) or "").startswith("step") else "tokens"
    return amount, unit


def _short(text: object, limit: int = 60) -> str:
    """`text` cut for an error line (a 400-digit budget is not worth echoing in full)."""
    value = str(text)
    return value if len(value) <= limit else f"{value[:limit]}... ({len(value)} characters)"


def tokens_per_step(recipe: PretrainRecipe, accumulation: int = 1) -> int:
    """Encoder positions per optimizer step: with `packing` about that many real tokens (a few
    percent padding); without, spans x max_length of which the short spans' padding is part."""
    return recipe.batch_size * recipe.max_length * accumulation


def resolve_steps(budget: str, recipe: PretrainRecipe, accumulation: int = 1) -> int:
    amount, unit = parse_budget(budget)
    if not 1 <= accumulation <= MAX_ACCUMULATION:  # a 400-digit int overflows the division below
        raise MaebenchError(f"--accumulation {_short(accumulation)} is out of range "
                            f"(1..{MAX_ACCUMULATION})")
    per_step = tokens_per_step(recipe, accumulation)
    steps = amount if unit == "steps" else amount / per_step
    if steps < 1:
        raise MaebenchError(
            f"budget '{_short(budget)}' is smaller than one optimizer step ({per_step} tokens = batch "
            f"{recipe.batch_size} x {recipe.max_length} tokens x accumulation {accumulation})"
        )
    if steps > MAX_STEPS:
        raise MaebenchError(f"budget '{_short(budget)}' is {steps:.3g} optimizer steps, more than "
                            f"{MAX_STEPS:.0e} (a budget of years on any machine)")
    return int(math.floor(steps))


def warmup_for(recipe: PretrainRecipe, steps: int) -> int:
    """The published warmup as a fraction of the published schedule, applied to `steps`."""
    if recipe.warmup_ratio is not None:
        return int(round(recipe.warmup_ratio * steps))
    if recipe.warmup_steps is not None and recipe.published_steps:
        return int(round(recipe.warmup_steps / recipe.published_steps * steps))
    return int(recipe.warmup_steps or 0)

"""Fine-tuning recipes: validated data files (benchmark/data/recipes/<name>.yaml), every value
with its source.

Recipe files are package data (trusted, flat), so they are read with plain safe_load. A recipe
file may `extends:` another one and restate only what differs (standard-cpu is
standard with a reduced budget); the merged values are validated as one Recipe, so a typo or a
value of the wrong type or range is a one-line error naming the file and field. `--set key=value`
overrides go through the same validation (pydantic's lax mode turns "1e-5" into a float), and
the resolved recipe, not the file, is what a fine-tuned card records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from benchmark.core.errors import MaebenchError
from benchmark.core.paths import EMBEDDED_DATA_DIR
from benchmark.core.validation import load_yaml_mapping, read_yaml_text, validate

RECIPES_DIR = EMBEDDED_DATA_DIR / "recipes"
OVERRIDE_SOURCE = "command line (--set)"
_META = ("name", "description", "sources")


class FinetuneError(MaebenchError):
    """The fine-tuning run cannot start or cannot finish (one line, naming the knob to turn).
    Here, below finetune and its sampler, so both raise it without importing each other."""


class RecipeError(MaebenchError):
    """A recipe file or a --set override is missing, malformed or out of range."""


# training: the recipe's training lengths; backbone: the backbone card's; task: training lengths
# on MS MARCO / TREC DL, q 64 / p 256 on BEIR tasks (training.cards.BEIR_EVAL_LENGTHS)
EvalLength = int | Literal["training", "backbone", "task"]


# The most steps any count in a recipe may name (a billion: years on any machine): bounds keep
# `--set max_steps=<400 digits>` a one-line error rather than an overflow deep in training.
MAX_STEPS = 10**9


class Recipe(BaseModel):
    """One fine-tuning protocol. Field descriptions say what each value does; the recipe files
    say where each value comes from (`sources`). Every number is finite and bounded: `--set
    lr=inf` or `nan` would train to NaN weights and still write a card."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]*$")
    description: str
    # training data
    negatives_card: Literal["bm25"] = Field(
        description="the maebench card that mines stage-1 hard negatives over the task's corpus"
    )
    negatives_depth: int = Field(ge=1, le=10_000, description="sample negatives from this top-k")
    group_size: int = Field(ge=1, le=512, description="passages per query: 1 positive + negatives")
    # optimisation
    queries_per_step: int = Field(ge=1, le=65_536, description="queries per optimiser step, all devices")
    mini_batch_size: int = Field(
        ge=0, le=1 << 20, description="0: plain loss; >0: GradCache "
        "(CachedMultipleNegativesRankingLoss) with this many texts per forward pass: same loss and "
        "gradients, bounded memory"
    )
    lr: float = Field(gt=0, le=1)
    lr_scheduler: Literal["linear", "cosine_with_min_lr", "constant_with_warmup"]
    min_lr_ratio: float = Field(ge=0, le=1, description="cosine_with_min_lr: floor as a fraction of lr")
    warmup_steps: int = Field(ge=0, le=MAX_STEPS, description="0 with warmup_ratio > 0: the ratio decides")
    warmup_ratio: float = Field(ge=0, le=1)
    weight_decay: float = Field(ge=0, le=1)
    max_grad_norm: float = Field(gt=0, le=1e6)
    epochs: int = Field(ge=1, le=1000)
    max_steps: int = Field(ge=0, le=MAX_STEPS, description="0: epochs decide; >0: stop after this many steps")
    precision: Literal["fp32", "fp16", "bf16"]
    # model / loss
    pooling: Literal["cls", "mean"]
    similarity: Literal["dot", "cosine"]
    temperature: float = Field(gt=0, le=100, description="logits = similarity / temperature")
    gather_across_devices: bool = Field(description="in-batch negatives from every device")
    query_max_length: int = Field(ge=4, le=8192)
    passage_max_length: int = Field(ge=4, le=8192)
    eval_query_max_length: EvalLength
    eval_passage_max_length: EvalLength
    # optional stage 2: negatives mined by the stage-1 model, restarted from the backbone
    stages: int = Field(ge=1, le=2)
    stage2_mining_depth: int = Field(ge=1, le=10_000)
    stage2_keep_bm25: bool = Field(description="stage 2 samples from the mined and the BM25 pools")
    stage2_epochs: int = Field(ge=1, le=1000)
    # checkpointing (resume after a kill)
    save_steps: int = Field(ge=1, le=MAX_STEPS)
    save_total_limit: int = Field(ge=1, le=10_000)
    logging_steps: int = Field(ge=1, le=MAX_STEPS)
    sources: dict[str, str]

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        values = [f for f in type(self).model_fields if f not in _META]
        missing = [f for f in values if f not in self.sources]
        if missing:
            raise ValueError(f"no source for {', '.join(missing)}")
        unknown = [f for f in self.sources if f not in values]
        if unknown:
            raise ValueError(f"sources names unknown field(s) {', '.join(unknown)}")
        if self.similarity == "cosine" and self.temperature > 1:
            raise ValueError("cosine similarity with temperature > 1 cannot separate positives")
        if self.mini_batch_size and self.mini_batch_size > self.queries_per_step * self.group_size:
            raise ValueError("mini_batch_size is larger than a whole step's texts")
        return self

    def values(self) -> dict[str, Any]:
        """The resolved values without name/description/sources (what a card records)."""
        return self.model_dump(mode="json", exclude=set(_META))


def available_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))


def _raw_recipe(name: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """One recipe file's mapping with its `extends:` chain merged in (values and sources)."""

    path = RECIPES_DIR / f"{name}.yaml"
    if name in seen:
        raise RecipeError(f"recipe {name}: 'extends' loops ({' -> '.join((*seen, name))})")
    if not path.is_file():
        raise RecipeError(f"unknown recipe '{name}' (known: {', '.join(available_recipes())})")
    raw = load_yaml_mapping(read_yaml_text(path, RecipeError), str(path), RecipeError, "a recipe")
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    merged = _raw_recipe(str(parent), (*seen, name))
    sources = {**merged.get("sources", {}), **raw.pop("sources", {})}
    merged.update(raw)
    merged["sources"] = sources
    return merged


def load_recipe(name: str, overrides: dict[str, str] | None = None) -> Recipe:
    """The named recipe with `overrides` (field -> text) applied and everything validated."""
    raw = _raw_recipe(name)
    origin = f"recipe {name} ({recipe_path(name)})"
    # the file alone must be valid, so a broken file is not blamed on an override
    recipe = validate(raw, Recipe, origin, RecipeError)
    if not overrides:
        return recipe
    fields = [f for f in Recipe.model_fields if f not in _META]
    for key, value in overrides.items():
        if key not in fields:
            raise RecipeError(f"--set {key}: not a recipe field (fields: {', '.join(fields)})")
        raw[key] = value
        raw["sources"] = {**raw["sources"], key: OVERRIDE_SOURCE}
    return validate(raw, Recipe, f"recipe {name} with --set {_joined(overrides)}", RecipeError)


def parse_overrides(items: list[str]) -> dict[str, str]:
    """`key=value` strings (from --set) -> mapping; values stay text until validated."""
    result: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise RecipeError(f"--set {item!r}: expected key=value")
        result[key.strip()] = value.strip()
    return result


def _joined(overrides: dict[str, str]) -> str:
    """The overrides for an error line; a value of hundreds of digits is cut, not echoed."""
    return " ".join(f"{k}={v if len(str(v)) <= 60 else str(v)[:60] + '...'}" for k, v in overrides.items())


def recipe_path(name: str) -> Path:
    return RECIPES_DIR / f"{name}.yaml"

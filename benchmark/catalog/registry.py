"""The model registry: one validated YAML card per retriever in models/.

Pooling, prefixes, similarity and lengths are the commonest reason a reproduction fails, so a
dense card must state every one of them: the schema has no silent defaults for those fields,
and unknown keys are rejected (a typo must not fall back to a default).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from benchmark.core.errors import RegistryError
from benchmark.core.paths import is_name, models_dir
from benchmark.core.validation import Strict, read_yaml_text, validate_yaml

NAME_PATTERN = r"^[a-z0-9][a-z0-9._\-]{0,79}$"


class Paper(Strict):
    title: str
    arxiv: str | None = None
    year: int | None = None
    venue: str | None = None
    url: str | None = None


class Pretraining(Strict):
    """How an MAE-style (or other) encoder was pre-trained, as its paper states it (shown on the
    site). None means "not stated / not applicable", never a guess."""

    objective: str
    encoder_mask_ratio: float | None = Field(default=None, ge=0, le=1)
    decoder_mask_ratio: float | None = Field(default=None, ge=0, le=1)
    decoder_layers: int | None = Field(default=None, ge=0)
    corpus: str | None = None
    initialised_from: str | None = None
    notes: str | None = None
    # Recorded by `maebench pretrain` (absent on cards describing a paper's own pre-training):
    corpus_fingerprint: str | None = None
    seed: int | None = None
    steps: int | None = Field(default=None, ge=0)
    tokens_seen: int | None = Field(default=None, ge=0)
    loss_start: float | None = None
    loss_end: float | None = None
    weights_sha256: str | None = None
    wall_time_s: float | None = Field(default=None, ge=0)
    hardware: dict[str, str | int | list[str] | dict[str, str] | None] | None = None
    versions: dict[str, str | None] | None = None
    recipe: dict[str, str | int | float | bool | None] | None = None
    recipe_sources: tuple[str, ...] | None = None
    # Recorded by `maebench backbone new` / `pretrain` for the MAE lab (issue 17):
    vocabulary_sha256: str | None = None
    architecture: dict[str, str | int | float | None] | None = None
    mlm_head: bool | None = Field(default=None, description="the weights folder carries a trained "
                                  "(or, from backbone new, initialised) MLM head")
    head_warmup_steps: int | None = Field(default=None, ge=0, description="steps that trained a new "
                                          "head (and decoders) with the encoder frozen, before the run")
    cpu_time_s: float | None = Field(default=None, ge=0, description="process CPU seconds (all threads)")
    flops: float | None = Field(default=None, ge=0, description="training FLOPs, 6 x parameters x tokens")
    positions_seen: int | None = Field(default=None, ge=0, description="encoder positions the "
                                       "batches held, padding included (tokens_seen counts real tokens)")
    heldout_start: dict[str, float] | None = Field(default=None, description="mean loss terms on "
                                                   "held-out documents' spans before the first step")
    heldout_end: dict[str, float] | None = Field(default=None, description="the same after the last step")


class Finetuning(Strict):
    """How the checkpoint was fine-tuned for retrieval; `stage: none` marks a pre-trained-only
    checkpoint (evaluated zero-shot as is, which is not how its paper used it)."""

    stage: Literal["none", "fine-tuned", "distilled"] = "fine-tuned"
    data: str | None = None
    negatives: str | None = None
    distillation: str | None = None
    notes: str | None = None
    record: FinetuneRecord | None = Field(
        default=None, description="written by `maebench finetune`: how this checkpoint was made"
    )


class PairsRecord(Strict):
    """Title -> text pairs of task corpora (training.title_pairs): what a run trained on when it
    read no queries and no qrels."""

    source: Literal["titles"]
    corpora: dict[str, str] = Field(description="task -> sha256 of its corpus.jsonl")
    pairs: int = Field(ge=0, description="pairs trained on")
    held_out: int = Field(ge=0, description="pairs held out (seeded) for the held-out loss")
    skipped: dict[str, int] = Field(description="documents that gave no pair, by reason")
    pairs_sha256: str = Field(description="sha256 of the trained pairs' ids, sorted")
    held_out_sha256: str = Field(description="sha256 of the held-out pairs' ids, sorted")


class TrainDataRecord(Strict):
    """The labelled data a `maebench finetune` run saw (sha256 of the raw files, as results).
    A title -> text pairs run read no queries or qrels: those two are null and `pairs` says
    what it read."""

    task: str
    split: str
    corpus_sha256: str
    queries_sha256: str | None
    qrels_sha256: str | None
    negatives_sha256: str = Field(description="sha256 of the mined negatives (JSON, sorted keys)")
    n_queries: int = Field(ge=0)
    n_pairs: int = Field(ge=0)
    held_out_queries: int = Field(default=0, ge=0, description="train queries held out (a study's pilot)")
    pairs: PairsRecord | None = None


class FinetuneRecord(Strict):
    """Everything `maebench finetune` knows about one run: enough to repeat it and to tell two
    fine-tuned cards apart (recipe as resolved after --set overrides, seed, data, outcome)."""

    recipe: str
    resolved_recipe: dict[str, Any]
    overrides: dict[str, str] = {}
    seed: int
    backbone_checkpoint: str
    backbone_revision: str | None = None
    train_data: TrainDataRecord
    stages: int = Field(ge=1)
    steps: int = Field(ge=0)
    final_loss: float | None
    mean_loss: float | None
    weights_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    libraries: dict[str, str | None]
    hardware: dict[str, Any]
    devices: int = Field(ge=1)
    wall_time_s: float = Field(ge=0)
    finished_at: str
    command: str | None = None


class Bm25Config(Strict):
    """A BM25 configuration; each field changes scores by points, so all are recorded."""

    kind: Literal["bm25"]
    implementation: Literal["bm25s"] = "bm25s"
    method: Literal["lucene", "robertson", "atire", "bm25l", "bm25+"]
    k1: float = Field(gt=0)
    b: float = Field(ge=0, le=1)
    stemmer: str | None
    stopwords: str | None
    fields: Literal["flat", "multifield"]
    title_separator: str = " "


HeadLayer = Literal["dense", "layernorm"]


# the forward-pass dtypes a card (or `maebench run --dtype`) may ask for
ModelDtype = Literal["float32", "float16", "bfloat16"]


class DenseConfig(Strict):
    """A bi-encoder: which weights, how texts are formatted, pooled and compared.

    encoder: `shared` one transformer for queries and passages (AutoModel); `separate` two
    checkpoints (DPR: DPRQuestionEncoder / DPRContextEncoder); `t5` a T5 encoder stack
    (T5EncoderModel); `dupmae` the DupMAE duplex representation: [CLS] vector concatenated with
    a top-k vocabulary vector max-pooled from the MLM head's logits (AutoModelForMaskedLM).
    head: layers applied after pooling, in order, read from the checkpoint's sentence-transformers
    module folders (GTR's `2_Dense` projection; ANCE's embedding head = dense + layernorm); the
    loader refuses a checkpoint whose modules.json lists a head layer the card does not name.
    title: `prepend` (title + separator + text), `none` (text only) or `pair` (title and text as
    a tokenizer sentence pair, [CLS] title [SEP] text [SEP], as DPR's context encoder was trained).
    """

    kind: Literal["dense"]
    encoder: Literal["shared", "separate", "t5", "dupmae"]
    checkpoint: str | None = None
    query_checkpoint: str | None = None
    passage_checkpoint: str | None = None
    revision: str | None = None
    local_package: str | None = Field(
        default=None, description="importable package whose get_model_path() holds the weights"
    )
    pooling: Literal["cls", "mean", "pooler"]
    head: tuple[HeadLayer, ...] = ()
    normalize: bool
    similarity: Literal["dot", "cosine"]
    query_prefix: str
    passage_prefix: str
    query_max_length: int = Field(gt=0, le=8192)
    passage_max_length: int = Field(gt=0, le=8192)
    title: Literal["prepend", "none", "pair"]
    title_separator: str = " "
    dtype: ModelDtype = "float32"
    batch_size: int = Field(default=64, gt=0, le=4096)
    dupmae_sparse_weight: float | None = Field(default=None, gt=0)
    dupmae_sparse_top_k: int | None = Field(default=None, gt=0)

    @property
    def has_checkpoint(self) -> bool:
        return bool(self.checkpoint or self.query_checkpoint or self.passage_checkpoint)

    @model_validator(mode="after")
    def _checkpoints_match_encoder(self) -> DenseConfig:
        separate = self.encoder == "separate"
        if not self.has_checkpoint:
            return self  # allowed only for cards with weights: unreleased (checked on the card)
        if separate and not (self.query_checkpoint and self.passage_checkpoint):
            raise ValueError("encoder 'separate' needs query_checkpoint and passage_checkpoint")
        if not separate and not self.checkpoint:
            raise ValueError(f"encoder '{self.encoder}' needs checkpoint")
        if not separate and (self.query_checkpoint or self.passage_checkpoint):
            raise ValueError("query_checkpoint/passage_checkpoint only go with encoder 'separate'")
        return self

    @model_validator(mode="after")
    def _encoder_specific_fields(self) -> DenseConfig:
        dupmae = self.encoder == "dupmae"
        given = self.dupmae_sparse_top_k is not None and self.dupmae_sparse_weight is not None
        if dupmae and not given and self.has_checkpoint:
            raise ValueError("encoder 'dupmae' needs dupmae_sparse_top_k and dupmae_sparse_weight")
        if not dupmae and (self.dupmae_sparse_top_k or self.dupmae_sparse_weight):
            raise ValueError("dupmae_sparse_* fields only go with encoder 'dupmae'")
        if self.pooling == "pooler" and self.encoder in ("t5", "dupmae"):
            raise ValueError(f"encoder '{self.encoder}' has no pooler output")
        if self.similarity == "cosine" and self.encoder == "dupmae":
            raise ValueError("the DupMAE representation is compared by dot product")
        return self


RetrieverConfig = Annotated[Bm25Config | DenseConfig, Field(discriminator="kind")]


class ModelCard(Strict):
    name: str = Field(pattern=NAME_PATTERN)
    display_name: str
    family: Literal["mae", "contrastive", "sparse", "supervised"]
    description: str
    source: str = Field(description="where the encoding settings were taken from")
    paper: Paper | None = None
    license: str | None = None
    parameters: int | None = Field(default=None, gt=0)
    embedding_dim: int | None = Field(default=None, gt=0)
    weights: Literal["public", "unreleased"] = Field(
        default="public",
        description="unreleased: the paper's checkpoint was never published; the card keeps the "
        "documented encoding (and reported numbers can be shown) but cannot be run",
    )
    retriever: RetrieverConfig
    pretraining: Pretraining | None = None
    finetuning: Finetuning | None = None
    finetuned_from: str | None = Field(
        default=None, pattern=NAME_PATTERN, description="the backbone card this one was fine-tuned from"
    )
    notes: str | None = None

    @model_validator(mode="after")
    def _weights_match_checkpoint(self) -> ModelCard:
        if self.retriever.kind != "dense":
            if self.weights != "public":
                raise ValueError("weights: unreleased only applies to dense retrievers")
            return self
        has = self.retriever.has_checkpoint
        if self.weights == "public" and not has:
            raise ValueError("retriever.checkpoint is required (or set weights: unreleased)")
        if self.weights == "unreleased" and has:
            raise ValueError("a card with weights: unreleased must not name a checkpoint")
        if self.family == "mae" and self.pretraining is None:
            raise ValueError("an MAE card must state its pretraining recipe")
        return self


def parse_card(text: str, origin: str) -> ModelCard:
    """Validate one card's YAML text; `origin` names it in the one-line error."""
    return validate_yaml(text, ModelCard, origin, RegistryError, "a model card")


def load_card(path: Path) -> ModelCard:
    text = read_yaml_text(path, RegistryError)
    card = parse_card(text, str(path))
    if card.name != path.stem:
        raise RegistryError(f"{path}: card name '{card.name}' must match the file name")
    return card


def load_cards(directory: Path | None = None) -> tuple[dict[str, ModelCard], list[str]]:
    """Every valid card and one message per broken one: a broken card must only block the
    commands that need it (running BM25 does not need a typo-ed RetroMAE card), and a user
    fixing cards wants all the errors at once, not one per attempt."""
    directory = directory or models_dir()
    if not directory.is_dir():
        raise RegistryError(f"model registry folder {directory} does not exist")
    cards: dict[str, ModelCard] = {}
    errors: list[str] = []
    for path in sorted(directory.glob("*.yaml")):
        try:
            card = load_card(path)
        except RegistryError as exc:
            errors.append(str(exc))
        else:
            cards[card.name] = card
    return cards, errors


def registry_error(errors: list[str]) -> RegistryError:
    """All broken cards in one error (one line per card)."""
    if len(errors) == 1:
        return RegistryError(errors[0])
    return RegistryError(f"{len(errors)} model cards are invalid:\n  " + "\n  ".join(errors))


def load_registry(directory: Path | None = None) -> dict[str, ModelCard]:
    """The whole registry; any broken card is an error (all of them reported together)."""
    cards, errors = load_cards(directory)
    if errors:
        raise registry_error(errors)
    return cards


def get_card(name: str, directory: Path | None = None) -> ModelCard:
    """One card by name: only its own file must be valid."""
    directory = directory or models_dir()
    path = directory / f"{name}.yaml"
    if is_name(name) and os.path.lexists(path):  # a FIFO or a link to /dev/zero: its own error
        return load_card(path)
    # `maebench study` cells live in models/studies/<study>/ (out of the main listing)
    study_cards = sorted(directory.glob(f"studies/*/{name}.yaml")) if is_name(name) else []
    if len(study_cards) == 1:
        return load_card(study_cards[0])
    cards, errors = load_cards(directory)
    wrapping = sorted(c.name for c in cards.values()
                      if name in {getattr(c.retriever, f, None) for f in
                                  ("checkpoint", "query_checkpoint", "passage_checkpoint")})
    hint = f"; card {', '.join(wrapping)} wraps that checkpoint" if wrapping else ""
    if not wrapping:
        from benchmark.core.errors import did_you_mean

        hint = did_you_mean(name, sorted(cards))
    broken = f"; {len(errors)} card(s) could not be read" if errors else ""
    raise RegistryError(
        f"unknown model '{name}'{hint} (known: {', '.join(sorted(cards))}){broken}"
    )


def find_card(text: str, directory: Path | None = None) -> ModelCard:
    """A card as a user types its name: exactly, else in any case or as its display name
    (`all-MiniLM-L6-v2`); otherwise get_card's error, with the closest names."""
    try:
        return get_card(text, directory)
    except RegistryError:
        folded = text.strip().casefold()
        cards, _ = load_cards(directory or models_dir())
        matches = [c for c in cards.values()
                   if folded in (c.name.casefold(), c.display_name.casefold())]
        if len(matches) == 1:
            return matches[0]
        raise

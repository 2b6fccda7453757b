"""Model cards for tiny local checkpoints (no network)."""

from __future__ import annotations

from pathlib import Path

import yaml

from benchmark.catalog.registry import ModelCard, parse_card


def tiny_card(folder: Path, name: str = "tiny-init") -> ModelCard:
    """A dense CLS-pooled card for pre-training, studies and objectives."""
    return ModelCard.model_validate({
        "name": name, "display_name": name, "family": "contrastive", "description": "tiny",
        "source": "tests", "retriever": {
            "kind": "dense", "encoder": "shared", "checkpoint": str(folder), "pooling": "cls",
            "normalize": False, "similarity": "dot", "query_prefix": "", "passage_prefix": "",
            "query_max_length": 64, "passage_max_length": 64, "title": "prepend"}})


def make_card(checkpoint: Path | None = None, **retriever) -> ModelCard:
    """A dense card pointing at a local tiny checkpoint; `retriever` overrides any field."""
    config = {
        "kind": "dense", "encoder": "shared", "checkpoint": str(checkpoint), "pooling": "cls",
        "normalize": False, "similarity": "dot", "query_prefix": "", "passage_prefix": "",
        "query_max_length": 64, "passage_max_length": 128, "title": "prepend", "batch_size": 4,
    }
    config.update(retriever)
    if config["encoder"] == "separate":
        config.pop("checkpoint")
    raw = {"name": "tiny-test", "display_name": "tiny", "family": "contrastive",
           "description": "test card", "source": "tests", "retriever": config}
    return parse_card(yaml.safe_dump(raw), "test card")


def dense_card(checkpoint) -> ModelCard:
    """`tiny-dense`: mean pooling, normalised, cosine (the embedding store's tests)."""
    raw = {"name": "tiny-dense", "display_name": "t", "family": "supervised", "description": "d",
           "source": "s", "weights": "public",
           "retriever": {"kind": "dense", "encoder": "shared", "checkpoint": str(checkpoint),
                         "pooling": "mean", "normalize": True, "similarity": "cosine",
                         "query_prefix": "", "passage_prefix": "", "query_max_length": 32,
                         "passage_max_length": 64, "title": "prepend"}}
    return parse_card(yaml.safe_dump(raw), "tiny-dense")


def backbone_card(checkpoint: str, name: str = "tiny-backbone", *, pooling: str = "mean",
                  display_name: str = "Tiny backbone",
                  description: str = "a 2-layer random BERT for tests",
                  source: str = "tests/helpers/checkpoints.py", passage_max_length: int = 64,
                  title_separator: str | None = None, batch_size: int = 8) -> str:
    """The YAML of a fine-tunable backbone card with random weights (by default mean pooling,
    dot; the fine-tuning tests and bench/bench_finetune_steps.py name their own shape)."""
    separator = "" if title_separator is None else f"\n  title_separator: '{title_separator}'"
    return f"""name: {name}
display_name: {display_name}
family: mae
description: {description}
source: {source}
pretraining:
  objective: none (random weights)
retriever:
  kind: dense
  encoder: shared
  checkpoint: {checkpoint}
  pooling: {pooling}
  normalize: false
  similarity: dot
  query_prefix: ''
  passage_prefix: ''
  query_max_length: 64
  passage_max_length: {passage_max_length}
  title: prepend{separator}
  dtype: float32
  batch_size: {batch_size}
finetuning:
  stage: none
"""

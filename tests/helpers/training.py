"""Pre-training on the embedded tiny corpus: objectives on a tiny checkpoint, small options, and
a kill right after a checkpoint save."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.core.paths import EMBEDDED_DATA_DIR
from tests.helpers.cards import tiny_card

TINY_CORPUS = str(EMBEDDED_DATA_DIR / "tiny" / "corpus.jsonl")
SMALL = {"batch_size": "4", "max_length": "32"}
OBJECTIVES = ["mlm", "condenser", "cocondenser", "retromae", "dupmae", "cotmae", "bowpred"]


def corpus_texts(corpus: str | Path = TINY_CORPUS) -> list[str]:
    """The texts pre-training reads from a BEIR corpus.jsonl (the embedded tiny one by default):
    title + text of each document."""
    from benchmark.training.corpus import read_texts, resolve_corpus

    return read_texts(resolve_corpus(str(corpus)))


def build(name: str, folder: Path, seed: int = 0, **params):
    """Objective `name` (its recipe, `params` overriding) around the checkpoint in `folder`."""
    import torch

    from benchmark.training.objectives import objective_class
    from benchmark.training.pretrain import load_init
    from benchmark.training.pretrain_recipe import apply_overrides, load_recipe

    torch.manual_seed(seed)
    encoder, head, tokenizer, _ = load_init(tiny_card(folder))
    recipe = apply_overrides(load_recipe(name), {k: str(v) for k, v in params.items()})
    return objective_class(name)(encoder, head, tokenizer, recipe.model_dump())


def options(tmp_path: Path, name: str, **kw):
    """PretrainOptions: MLM on the tiny corpus, 4 steps, a save every 2 (`kw` overrides)."""
    from benchmark.training.pretrain import PretrainOptions

    base = dict(objective="mlm", corpus=TINY_CORPUS, budget="4steps", name=name, seed=0,
                overrides=dict(SMALL), models_dir=tmp_path / "models", save_every=2)
    base.update(kw)
    return PretrainOptions(**base)


def die_after_a_save(monkeypatch, run) -> None:
    """Call `run` with pre-training killed (KeyboardInterrupt) right after a checkpoint is saved,
    then restore the trainer: the kill a resume must survive."""
    import benchmark.training.pretrain as pretrain

    original = pretrain._Trainer._save

    def save_then_die(self, state):
        original(self, state)
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(pretrain._Trainer, "_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run()
    monkeypatch.setattr(pretrain._Trainer, "_save", original)

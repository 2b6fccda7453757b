"""Fine-tuning's faster step computes the same loss; every run stores its curve; a loss that is
not finite stops the run with one line and no card (issues 26, 25 and 27)."""

from __future__ import annotations

import json
import math

import pytest

from tests.helpers.scifact import TINY
from tests.helpers.scifact import finetune as _finetune


@pytest.fixture
def env(scifact_env):
    """The made-up scifact folder, models and tiny BERT (tests/conftest.py)."""
    return scifact_env


QUERIES = ["which apple is red", "river cold", "engine fast loud", "violin old", "glacier small cold",
           "tomato green", "rocket bright fast", "castle old", "falcon fast", "copper bright"]
PASSAGES = [f"{t} note the {t} is {w}" for t, w in zip(
    ["apple", "river", "engine", "violin", "glacier", "tomato", "rocket", "castle", "falcon", "copper"],
    ["red", "cold", "fast loud", "old", "small cold", "green", "bright fast", "old", "fast", "bright"],
    strict=True)]


def _texts(base: list[str], n: int) -> list[str]:
    """`n` texts of very different lengths (so that the fast path splits them by length)."""
    return [" ".join([base[i % len(base)]] * (1 + (i * 7) % 5)) for i in range(n)]


def test_token_cache_feeds_the_model_what_its_own_preprocess_gives(env):
    import torch

    from benchmark.training.finetune import build_model
    from benchmark.training.recipes import load_recipe
    from benchmark.training.sampler import TokenCache

    recipe = load_recipe("standard", {"query_max_length": "8", "passage_max_length": "12"})
    model = build_model(str(env["ckpt"]), recipe, "cpu")
    queries, passages = _texts(QUERIES, 12), _texts(PASSAGES, 12)
    cache = TokenCache(model[0].tokenizer, {"query": queries, "document": passages},
                       {"query": 8, "document": 12}, chunk=5)
    for task, texts in (("query", queries), ("document", passages)):
        rows = [3, 0, 7, 11, 5]
        want = model.preprocess([texts[i] for i in rows], task=task)
        got = cache.preprocess(rows, task=task)
        assert set(got) == set(want)
        for key, value in want.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(got[key], value), (task, key)
            else:
                assert got[key] == value


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_fast_step_loss_and_gradients_equal_the_old_computation(env, similarity):
    """The new step ([CLS]-only last layer, length-sorted chunks, cached token ids) against the
    old one (sentence-transformers' MNRL over model.preprocess of the texts) on one batch of 32
    queries x group 2, in eval mode (dropout would draw different random numbers)."""
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from benchmark.training.finetune import build_loss, build_model
    from benchmark.training.recipes import load_recipe
    from benchmark.training.sampler import ClsMultipleNegativesRankingLoss, _chunks, cls_fast_path

    recipe = load_recipe("standard", {"temperature": "0.05" if similarity == "cosine" else "1",
                                      "similarity": similarity, "query_max_length": "16",
                                      "passage_max_length": "32"})
    model = build_model(str(env["ckpt"]), recipe, "cpu")
    model.eval()
    assert cls_fast_path(model)
    queries, positives = _texts(QUERIES, 32), _texts(PASSAGES, 32)
    negatives = list(reversed(positives))
    features = [model.preprocess(queries, task="query"), model.preprocess(positives, task="document"),
                model.preprocess(negatives, task="document")]
    lengths = sorted(features[0]["attention_mask"].sum(1).tolist(), reverse=True)
    assert len(_chunks(lengths)) > 1  # the queries are split by length: that path is exercised

    def loss_and_grads(loss_fn):
        model.zero_grad()
        loss = loss_fn(features, None)
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        return float(loss.detach()), grads

    new_fn = build_loss(model, recipe)
    assert isinstance(new_fn, ClsMultipleNegativesRankingLoss)
    old_fn = MultipleNegativesRankingLoss(model, scale=new_fn.scale, similarity_fct=new_fn.similarity_fct)
    new_loss, new_grads = loss_and_grads(new_fn)
    old_loss, old_grads = loss_and_grads(old_fn)
    assert new_loss == pytest.approx(old_loss, rel=1e-5, abs=1e-6)
    assert new_loss > 0.01
    # the same gradients: the unused rows of the last layer contributed nothing to them. Compared
    # against the largest gradient (some, e.g. the key biases', are exactly 0 in theory: a key
    # bias shifts every score of a query alike, so both paths give float noise of ~1e-7 there)
    assert set(new_grads) == set(old_grads)
    largest = max(float(g.abs().max()) for g in old_grads.values())
    total = sum(float((new_grads[n] - g).pow(2).sum()) for n, g in old_grads.items()) ** 0.5
    assert total <= 1e-4 * sum(float(g.pow(2).sum()) for g in old_grads.values()) ** 0.5
    for name, grad in old_grads.items():
        assert float((new_grads[name] - grad).abs().max()) <= 1e-4 * largest, name


@pytest.mark.slow
def test_every_run_stores_its_curve_and_held_out_evaluations(env):
    from benchmark.catalog.registry import get_card, load_card
    from benchmark.catalog.weights import weights_sha256
    from benchmark.training.cards import finetune_curve
    from benchmark.training.finetune import LOG_FILE, run_finetune

    result = run_finetune(
        get_card("tiny-backbone", env["models"]), "scifact", "standard-cpu", 0, "curved",
        {"queries_per_step": "2", "group_size": "2", "query_max_length": "16", "passage_max_length": "32",
         "max_steps": "4", "save_steps": "2", "negatives_depth": "5", "lr": "1e-3"},
        env["data"], "cpu", models_dir=env["models"], progress=False,
        held_out=frozenset({"q6", "q7"}), validate_every=2,
    )
    card = load_card(result.card_path)
    log = json.loads((result.weights_dir / LOG_FILE).read_text())
    assert [e["step"] for e in log["steps"]] == [1, 2, 3, 4]
    assert all(math.isfinite(e["loss"]) and e["lr"] >= 0 for e in log["steps"])
    assert log["steps"][0]["lr"] == 0.0  # linear warm-up from 0: step 1 trains at lr 0
    assert log["steps"][-1]["loss"] == pytest.approx(card.finetuning.record.final_loss, rel=1e-3)
    assert log["candidates_per_query"] == 4 and log["chance_loss"] == pytest.approx(math.log(4))
    assert log["final_window_steps"] == 4
    assert log["final_window_loss"] == pytest.approx(sum(e["loss"] for e in log["steps"]) / 4)
    assert log["held_out_queries"] == 2
    held = log["validation"]
    assert [e["step"] for e in held] == [0, 2, 4]
    assert all(math.isfinite(e["validation_loss"]) for e in held)
    assert held[0]["validation_chance"] == pytest.approx(math.log(2 * 2))
    assert "of chance" in card.finetuning.notes and LOG_FILE in card.finetuning.notes
    assert finetune_curve(card) == log
    # the log sits beside the weights without changing their sha256 (checked at load)
    assert weights_sha256(result.weights_dir) == card.finetuning.record.weights_sha256
    assert finetune_curve(load_card(env["models"] / "tiny-backbone.yaml")) is None


@pytest.mark.slow
def test_a_resumed_run_keeps_the_curve_of_the_uninterrupted_one(env):
    from transformers import TrainerCallback

    from benchmark.catalog.registry import load_card
    from benchmark.training.cards import finetune_curve

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise KeyboardInterrupt("simulated kill after the step-2 checkpoint")

    whole = finetune_curve(load_card(_finetune(env, "whole", overrides={"save_steps": "2"}).card_path))
    with pytest.raises(KeyboardInterrupt):
        _finetune(env, "again", overrides={"save_steps": "2"}, callbacks=[Crash()])
    resumed = finetune_curve(load_card(_finetune(env, "again", overrides={"save_steps": "2"}).card_path))
    assert [(e["step"], e["lr"]) for e in resumed["steps"]] == [(e["step"], e["lr"]) for e in whole["steps"]]
    for a, b in zip(resumed["steps"], whole["steps"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_loss_that_is_not_finite_stops_at_once_and_writes_no_card(env, monkeypatch, bad):
    import torch

    from benchmark.training.finetune import FinetuneError
    from benchmark.training.sampler import ClsMultipleNegativesRankingLoss

    calls = {"n": 0}
    original = ClsMultipleNegativesRankingLoss.compute_loss_from_embeddings

    def poisoned(self, embeddings, labels):
        loss = original(self, embeddings, labels)
        calls["n"] += 1
        return loss * torch.tensor(bad) if calls["n"] == 2 else loss

    monkeypatch.setattr(ClsMultipleNegativesRankingLoss, "compute_loss_from_embeddings", poisoned)
    with pytest.raises(FinetuneError, match=rf"loss became {bad} at step 2; stopped, no card") as info:
        _finetune(env, "poisoned")
    assert "\n" not in str(info.value)
    assert calls["n"] == 2  # stopped at once: no third step
    assert not (env["models"] / "poisoned.yaml").exists()
    assert not (env["home"] / "checkpoints" / "poisoned").exists()


@pytest.mark.slow
def test_cli_prints_one_error_line_for_a_loss_that_is_not_finite(env, tmp_path):
    """Through the command line, a backbone with one NaN weight (what a plug-in or an exploded
    pre-training leaves): the loss is NaN at step 1, and the run ends with one `error:` line and
    no card."""
    import os
    import shutil
    import subprocess
    import sys

    import torch
    from transformers import AutoModel

    from tests.helpers.cards import backbone_card

    broken = tmp_path / "nan-bert"
    shutil.copytree(env["ckpt"], broken)
    model = AutoModel.from_pretrained(broken)
    with torch.no_grad():
        model.encoder.layer[0].attention.self.query.weight[0, 0] = float("nan")
    model.save_pretrained(broken)
    (env["models"] / "nan-backbone.yaml").write_text(backbone_card(str(broken), "nan-backbone"))
    args = [sys.executable, "-m", "benchmark.cli", "finetune", "--model", "nan-backbone", "--task", "scifact",
            "--recipe", "standard-cpu", "--name", "exploded", "--data-dir", str(env["data"]),
            "--device", "cpu"]
    for key, value in {"queries_per_step": "2", "group_size": "2", "query_max_length": "16",
                       "passage_max_length": "32", "max_steps": "4", "negatives_depth": "5"}.items():
        args += ["--set", f"{key}={value}"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MAEBENCH_HOME": str(env["home"]),
                               "MAEBENCH_MODELS_DIR": str(env["models"])})
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0, proc.stderr[-2000:]
    assert len(errors) == 1, proc.stderr[-2000:]
    assert "loss became nan at step 1; stopped, no card written" in errors[0], errors
    assert not (env["models"] / "exploded.yaml").exists()
    assert not (env["home"] / "checkpoints" / "exploded").exists()


def test_a_validation_set_holds_train_queries_only(env, tmp_path):
    import os

    from benchmark.commands.finetune import read_query_ids
    from benchmark.core.errors import MaebenchError
    from benchmark.training.finetune import FinetuneError

    with pytest.raises(FinetuneError, match="'t0'.* a validation set holds train queries only"):
        _held_out(env, {"q6", "t0"})
    ids = tmp_path / "ids.txt"
    ids.write_text("# held out\nq6\n\nq7\n")
    assert read_query_ids(ids) == frozenset({"q6", "q7"})
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(MaebenchError, match="not a regular file"):
        read_query_ids(fifo)  # refused at once, never opened (would block)


def _held_out(env, queries: set[str]):
    from benchmark.catalog.registry import get_card
    from benchmark.training.finetune import run_finetune

    return run_finetune(get_card("tiny-backbone", env["models"]), "scifact", "standard-cpu", 0, "held",
                        dict(TINY), env["data"], "cpu", models_dir=env["models"],
                        progress=False, held_out=frozenset(queries))

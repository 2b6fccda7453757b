"""`maebench pretrain` end to end on a tiny checkpoint: the card, the saved encoder, resume,
reproducibility, and the one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from benchmark.catalog.registry import load_card
from benchmark.core.errors import DataError, MaebenchError, ModelLoadError
from benchmark.training.pretrain import pretrain_card
from benchmark.training.pretrain_recipe import load_recipe, parse_budget, resolve_steps
from tests.helpers.cards import tiny_card
from tests.helpers.training import die_after_a_save, options


@pytest.mark.slow
def test_fixed_seed_same_loss_curve_and_resume(tiny_bert_dir, tmp_path, monkeypatch) -> None:
    from benchmark.core.paths import checkpoints_dir

    init = tiny_card(tiny_bert_dir)
    a = load_card(pretrain_card(init, options(tmp_path, "seed-a", objective="cotmae")))
    b = load_card(pretrain_card(init, options(tmp_path, "seed-b", objective="cotmae")))
    c = load_card(pretrain_card(init, options(tmp_path, "seed-c", objective="cotmae", seed=1)))
    curve = [json.loads((checkpoints_dir() / n / "pretrain_log.json").read_text())["losses"]
             for n in ("seed-a", "seed-b", "seed-c")]
    assert curve[0] == curve[1] and curve[0] != curve[2]
    assert a.pretraining.weights_sha256 == b.pretraining.weights_sha256 != c.pretraining.weights_sha256

    # a run killed after its step-2 save resumes to the same weights as an uninterrupted one
    die_after_a_save(monkeypatch, lambda: pretrain_card(init, options(tmp_path, "seed-d",
                                                                      objective="cotmae")))
    assert (checkpoints_dir() / ".seed-d.partial" / "progress.json").is_file()
    with pytest.raises(MaebenchError, match="--resume"):
        pretrain_card(init, options(tmp_path, "seed-d", objective="cotmae"))
    d = load_card(pretrain_card(init, options(tmp_path, "seed-d", objective="cotmae", resume=True)))
    resumed = json.loads((checkpoints_dir() / "seed-d" / "pretrain_log.json").read_text())["losses"]
    assert resumed == curve[0]
    assert d.pretraining.weights_sha256 == a.pretraining.weights_sha256


def test_budget_parsing_and_too_small(tiny_bert_dir, tmp_path) -> None:
    recipe = load_recipe("mlm")
    assert parse_budget("300steps") == (300, "steps")
    assert parse_budget("1.5M tokens") == (1_500_000, "tokens")
    assert resolve_steps("2M", recipe) == 2_000_000 // (256 * 512)
    with pytest.raises(MaebenchError, match="smaller than one optimizer step"):
        pretrain_card(tiny_card(tiny_bert_dir), options(tmp_path, "x", budget="100 tokens"))
    with pytest.raises(MaebenchError, match="not '<number>"):
        parse_budget("lots")


def test_errors(tiny_bert_dir, tmp_path, monkeypatch) -> None:
    init = tiny_card(tiny_bert_dir)
    with pytest.raises(MaebenchError, match="unknown objective 'mae'"):
        pretrain_card(init, options(tmp_path, "x", objective="mae"))
    bad = tmp_path / "notbeir.jsonl"
    bad.write_text('{"id": 1, "body": "no text field"}\n')
    with pytest.raises(DataError, match="is not BEIR corpus jsonl"):
        pretrain_card(init, options(tmp_path, "x", corpus=str(bad)))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = tiny_card(tmp_path / "no-such-weights")
    missing = missing.model_copy(update={"retriever": missing.retriever.model_copy(
        update={"checkpoint": "org/not-downloaded-model"})})
    with pytest.raises(ModelLoadError, match="cannot load checkpoint org/not-downloaded-model"):
        pretrain_card(missing, options(tmp_path, "x"))
    with pytest.raises(MaebenchError, match="unknown recipe setting 'lr'"):
        pretrain_card(init, options(tmp_path, "x", overrides={"lr": "1"}))


def test_cli_errors_are_one_line(tmp_path) -> None:
    cmd = [sys.executable, "-m", "benchmark.cli", "pretrain", "--objective", "nope", "--init",
           "all-minilm-l6-v2", "--corpus", "scifact", "--budget", "10steps", "--name", "x"]
    out = subprocess.run(cmd, capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1",
                         "PATH": "/usr/bin:/bin"})
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: unknown objective 'nope' (known: mlm, condenser, cocondenser, retromae, dupmae, "
        "cotmae, bowpred, simlm)"]

"""What the training and run commands print (issue 20 item 9, item 3): one progress display
for fine-tuning (a line per logged step, no raw trainer dicts or library bars), the budget as
options, a warning when the warm-up is as long as the run, display names that carry --set
overrides, pre-training progress without --verbose, and `run` lines never hard-wrapped."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmark.cli import app
from tests.helpers.cards import backbone_card
from tests.helpers.scifact import write_beir

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def backbone(tmp_path_factory, tiny_bert_dir):
    root = tmp_path_factory.mktemp("cli-output")
    models = root / "models"
    models.mkdir()
    (models / "tiny-backbone.yaml").write_text(backbone_card(str(tiny_bert_dir)))
    shutil.copy(REPO / "models" / "bm25.yaml", models)
    return {"data": write_beir(root / "data"), "models": models, "root": root}


def _invoke(args: list[str], env: dict) -> str:
    out = CliRunner().invoke(app, args, env={"HF_HUB_OFFLINE": "1", **env})
    assert out.exit_code == 0, (out.output, out.exception)
    return out.output


@pytest.mark.slow
def test_finetune_budget_options_one_progress_display_and_warm_up_warning(backbone, tmp_path):
    env = {"MAEBENCH_HOME": str(tmp_path / "home"), "MAEBENCH_MODELS_DIR": str(backbone["models"])}
    common = ["finetune", "--model", "tiny-backbone", "--task", "scifact", "--recipe",
              "standard-cpu", "--data-dir", str(backbone["data"]), "--device", "cpu",
              "--set", "group_size=2", "--set", "negatives_depth=5",
              "--set", "query_max_length=16", "--set", "passage_max_length=32"]
    one = _invoke([*common, "--max-steps", "1", "--queries-per-step", "2", "--name", "ft-a"], env)
    assert "training: 1 steps of 2 queries" in one
    assert "WARNING the warm-up (1 steps) is as long as the run (1 steps)" in one
    assert re.search(r"step 1/1  loss \d", one)
    assert "{'loss'" not in one and "it/s]" not in one and "Loading weights" not in one
    from benchmark.catalog.registry import load_card

    card = load_card(backbone["models"] / "ft-a.yaml")
    assert "max_steps=1" in card.display_name and "queries_per_step=2" in card.display_name
    assert card.finetuning.record.overrides["max_steps"] == "1"  # recorded like any --set
    clash = CliRunner().invoke(app, [*common, "--max-steps", "1", "--set", "max_steps=2"], env=env)
    assert clash.exit_code != 0 and "disagree" in str(clash.exception)


def test_warm_up_shorter_than_the_run_is_not_warned_and_names_differ_by_overrides(capsys):
    from types import SimpleNamespace

    from benchmark.catalog.registry import get_card
    from benchmark.commands.finetune import TrainingProgress
    from benchmark.training.cards import display_name
    from benchmark.training.recipes import load_recipe

    progress = TrainingProgress()
    args = SimpleNamespace(per_device_train_batch_size=2, learning_rate=2e-5,
                           get_warmup_steps=lambda total: 1)
    progress.on_train_begin(args, SimpleNamespace(max_steps=2, global_step=0), None)
    progress.on_train_begin(args, SimpleNamespace(max_steps=1, global_step=0), None)
    err = capsys.readouterr().err
    assert err.count("WARNING the warm-up") == 1 and "(1 steps) is as long as the run (1 steps)" in err
    backbone, recipe = get_card("all-minilm-l6-v2"), load_recipe("standard-cpu")
    names = {display_name(backbone, recipe, "scifact", 0, o)
             for o in (None, {"lr": "1e-5"}, {"lr": "1e-5", "group_size": "8"})}
    assert len(names) == 3


def test_pretrain_prints_its_progress_without_verbose(backbone, tmp_path):
    env = {"MAEBENCH_HOME": str(tmp_path / "home"), "MAEBENCH_MODELS_DIR": str(backbone["models"])}
    out = _invoke(["pretrain", "--objective", "mlm", "--init", "tiny-backbone", "--corpus", "tiny",
                   "--budget", "2steps", "--name", "tiny-mlm", "--set", "batch_size=2",
                   "--set", "max_length=32", "--set", "head_warmup_steps=0"], env)
    assert re.search(r"tiny-mlm step 1/2 loss \d", out), out
    assert "WARNING tiny-mlm step" not in out


def test_run_lines_are_not_hard_wrapped(tmp_path):
    results = tmp_path / ("a-long-folder-name-" * 4) / "results"
    out = _invoke(["run", "--model", "bm25", "--task", "tiny", "--results-dir", str(results)], {})
    again = _invoke(["run", "--model", "bm25", "--task", "tiny", "--results-dir", str(results)], {})
    stored = str(results / "bm25" / "tiny.json")
    assert any(stored in line for line in out.splitlines()), out
    assert any(line.startswith("skip bm25 on tiny") and line.endswith("--overwrite redoes it")
               for line in again.splitlines()), again


def test_cost_note_before_a_dense_run_on_a_big_corpus_on_cpu():
    from benchmark.catalog.registry import get_card
    from benchmark.catalog.tasks import get_task
    from benchmark.commands.run import cpu_cost_note

    note = cpu_cost_note(get_card("all-minilm-l6-v2"), get_task("scifact"), "cpu")
    assert note and "5,183 documents" in note and "CPU-minutes" in note
    torch_note = cpu_cost_note(get_card("all-minilm-l6-v2"), get_task("scifact"), "cpu", "torch")
    assert "with torch" in torch_note

    def minutes(text: str) -> int:
        return int(text.split("about ")[1].split(" CPU-minutes")[0])

    assert minutes(torch_note) >= minutes(note)  # torch is never estimated faster
    assert cpu_cost_note(get_card("all-minilm-l6-v2"), get_task("tiny"), "cpu") is None
    assert cpu_cost_note(get_card("bm25"), get_task("scifact"), "cpu") is None
    assert cpu_cost_note(get_card("all-minilm-l6-v2"), get_task("scifact"), "cuda") is None

"""`maebench study`: spec validation, cell order and reuse, surviving an interruption, and the
report's statistics, on the embedded tiny task with a tiny checkpoint (fine-tuning is replaced
by a copy of the backbone card: its own tests live with `maebench finetune`)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from benchmark.core.errors import MaebenchError
from benchmark.studies.runner import run_study
from benchmark.studies.spec import StudyOptions, cells, load_spec, report_path
from tests.helpers.cards import tiny_card
from tests.helpers.study import write_spec


def test_spec_errors(tmp_path) -> None:
    with pytest.raises(MaebenchError, match="unknown task 'nosuch'"):
        load_spec(str(write_spec(tmp_path, evaluate=["nosuch"])))
    with pytest.raises(MaebenchError, match="unknown fine-tuning recipe 'fast'"):
        load_spec(str(write_spec(tmp_path, finetune={"task": "tiny", "recipe": "fast"})))
    with pytest.raises(MaebenchError, match="unknown objective 'mae'"):
        load_spec(str(write_spec(tmp_path, arms=[{"name": "base", "objective": None},
                                                 {"name": "x", "objective": "mae"}])))
    with pytest.raises(MaebenchError, match="baseline_arm 'none' is not an arm"):
        load_spec(str(write_spec(tmp_path, baseline_arm="none")))
    with pytest.raises(MaebenchError, match="no study spec 'nope'"):
        load_spec("nope")
    out = subprocess.run([sys.executable, "-m", "benchmark.cli", "study", str(write_spec(
        tmp_path, evaluate=["nosuch"])), "--report-only"], capture_output=True, text=True)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1


def test_bundled_spec_and_scale() -> None:
    spec = load_spec("scifact-dapt")
    assert spec.budget == "32768 tokens" and len(spec.arms) == 7 and spec.seeds == (0, 1)
    assert load_spec("scifact-dapt", {"scale": "100", "id": "big"}).budget == "3276800 tokens"
    with pytest.raises(MaebenchError, match="add --set id=<new id>"):
        load_spec("scifact-dapt", {"scale": "100"})
    order = [(c.arm.name, c.seed) for c in cells(spec)]
    assert order[:2] == [("finetune-only", 0), ("mlm", 0)] and order[7] == ("finetune-only", 1)


@pytest.mark.slow
def test_study_runs_reuses_and_survives_a_crash(study_env, tmp_path, monkeypatch) -> None:
    import benchmark.pipeline.runner as runner

    spec = load_spec(str(write_spec(tmp_path)))
    real_run = runner.run_task
    crashed = []

    def crash_once(card, task, options):
        if card.name == "tiny-study-bow-s0" and not crashed:
            crashed.append(card.name)
            raise KeyboardInterrupt("killed")
        return real_run(card, task, options)

    monkeypatch.setattr(runner, "run_task", crash_once)
    with pytest.raises(KeyboardInterrupt):
        run_study(spec, StudyOptions())
    done_before = list(study_env)
    log: list[str] = []
    path = run_study(spec, StudyOptions(), echo=log.append)
    log = [line for line in log if not line.startswith("gate")]  # gates: tests/test_study_gates.py
    # the crashed cell's pre-training and fine-tuning were reused, only its run was redone
    assert log[0] == "cell base seed 0: reused" and log[1] == "cell mlm seed 0: reused"
    assert log[2] == "cell bow seed 0: run tiny-study-bow-s0 on tiny, diagnostics"
    assert study_env[: len(done_before)] == done_before and len(study_env) == 6
    again: list[str] = []
    run_study(spec, StudyOptions(), echo=again.append)
    again = [line for line in again if not line.startswith("gate")]
    assert all(line.endswith("reused") for line in again) and len(again) == 6

    report = json.loads(path.read_text())
    assert path == report_path(spec) and report["complete"] and report["missing_cells"] == []
    base = report["arms"]["base"]["tasks"]["tiny"]
    assert base["n_seeds"] == 2 and len(base["per_seed"]) == 2
    # the fine-tune-only arm copies the init card for both seeds: identical scores, zero spread
    assert base["spread"] == 0 and base["std"] == 0
    # a tiny random study fails its gates, so its contrasts are withheld, not lost
    contrasts = report.get("withheld_contrasts", report)["comparisons"]
    rows = {r["arm"]: r for r in contrasts["tiny"]}
    assert set(rows) == {"mlm", "bow"}
    for row in rows.values():
        assert 0 < row["p_value"] <= 1 and row["p_holm"] >= row["p_value"] and row["seeds"] == [0, 1]
    # on a new machine the committed cards come without the weights under the home folder: a
    # cell still to do gets its pre-training redone, seeded, to the same weights
    import shutil

    from benchmark.catalog.registry import load_card
    from benchmark.core.paths import checkpoints_dir

    pt_card = tmp_path / "models" / "studies" / "tiny-study" / "tiny-study-mlm-s1-pt.yaml"
    before = load_card(pt_card).retriever.revision
    shutil.rmtree(checkpoints_dir() / "tiny-study-mlm-s1-pt")
    (tmp_path / "results" / "studies" / "tiny-study" / "tiny-study-mlm-s1" / "tiny.json").unlink()
    redo: list[str] = []
    run_study(spec, StudyOptions(), echo=redo.append)
    redo = [line for line in redo if not line.startswith("gate")]
    assert redo[0] == "tiny-study-mlm-s1-pt: its weights are gone from this machine; redoing that step"
    assert load_card(pt_card).retriever.revision == before  # bit-identical weights
    mlm_cells = report["arms"]["mlm"]["cells"]
    assert all(c["pretrain_tokens"] > 0 and c["pretrain_steps"] == 4 for c in mlm_cells)
    assert (tmp_path / "models" / "studies" / "tiny-study" / "tiny-study-mlm-s1-pt.yaml").is_file()
    assert (tmp_path / "results" / "studies" / "tiny-study" / "tiny-study-mlm-s1" / "tiny.json").is_file()


def test_study_page(tmp_path) -> None:
    """The site page of a study report: table, cells and the score-vs-cost plot."""
    from benchmark.core.paths import site_dir
    from benchmark.site.output import write_files
    from benchmark.site.study_pages import study_pages
    from benchmark.site.templating import jinja_environment

    spec = load_spec(str(write_spec(tmp_path)))
    arm = {"objective": None, "cells": [{"seed": 0, "card": "c0", "pretrain_tokens": 0,
                                         "pretrain_steps": 0, "pretrain_wall_s": 0.0}],
           "tasks": {"tiny": {"mean": 0.5, "std": None, "n_seeds": 1, "per_seed": [0.5], "spread": 0.0}},
           "pretrain_tokens_mean": 0, "pretrain_wall_s_mean": 0.0}
    mlm = {**arm, "objective": "mlm", "pretrain_tokens_mean": 512, "pretrain_wall_s_mean": 12.0,
           "tasks": {"tiny": {"mean": 0.55, "std": 0.01, "n_seeds": 2, "per_seed": [0.54, 0.56],
                              "spread": 0.02}}}
    report = {"study": spec.model_dump(mode="json"), "metric": "nDCG@10", "budget": spec.budget,
              "arms": {"base": arm, "mlm": mlm}, "complete": False, "missing_cells": ["bow s0"],
              "comparisons": {"tiny": [{"arm": "mlm", "diff": 0.05, "p_value": 0.01, "p_holm": 0.02}]},
              "method": "m"}
    results = tmp_path / "res"
    (results / "studies").mkdir(parents=True)
    (results / "studies" / "tiny-study.json").write_text(json.dumps(report))
    env = jinja_environment(site_dir() / "templates")
    env.globals["nav"] = []
    out = tmp_path / "site"
    out.mkdir()
    pages = study_pages(results)
    assert pages.nav == (("Studies", "studies.html"),)
    write_files(pages.render(env), out)
    page = (out / "study-tiny-study.html").read_text()
    assert "<svg" in page and "+5.00" in page and "Incomplete" in page and "bow s0" in page
    assert 'href="study-tiny-study.html"' in (out / "studies.html").read_text()


def test_study_cards_are_found_by_name_but_not_listed(tmp_path, tiny_bert_dir) -> None:
    from benchmark.catalog.registry import get_card, load_registry
    from benchmark.training.pretrain import write_card

    write_card(tiny_card(tiny_bert_dir), tmp_path, overwrite=False)
    write_card(tiny_card(tiny_bert_dir, "cell-s0"), tmp_path / "studies" / "x", overwrite=False)
    assert set(load_registry(tmp_path)) == {"tiny-init"}
    assert get_card("cell-s0", tmp_path).name == "cell-s0"


def test_profile_is_the_one_switch_to_the_gpu_study(tmp_path) -> None:
    """The lab spec's msmarco-gpu profile: its own id, bert-base-uncased (an MLM checkpoint with
    its head) instead of a backbone built here, no stage 0, the scaled budget, the data and
    recipe it runs on, merged key by key; the arms, seeds and primary family stay the CPU study's."""
    cpu, gpu = load_spec("scratch-mae"), load_spec("scratch-mae", profile="msmarco-gpu")
    assert gpu.id == "msmarco-mae" != cpu.id
    assert gpu.init == "bert-base-uncased" and gpu.backbone is None and gpu.stage0 is None
    assert gpu.budget == "307200000 tokens" and gpu.corpus == "msmarco"
    assert gpu.finetune.task == "msmarco" and gpu.finetune.recipe == "standard" and gpu.finetune.pilot is None
    assert gpu.evaluate == ("msmarco", "trec-dl-2019", "trec-dl-2020")
    assert gpu.pretrain_overrides["batch_size"] == 256 and gpu.pretrain_overrides["learning_rate"] == 1e-4
    assert gpu.arms == cpu.arms and gpu.seeds == cpu.seeds and gpu.primary == cpu.primary
    assert [c.finetuned for c in cells(gpu)][0].startswith("msmarco-mae-")
    smoke = load_spec("scratch-mae", profile="smoke")
    assert smoke.stage0.budget_tokens == 327680 and smoke.stage0.objective == "mlm"  # merged
    assert smoke.stage0.overrides == cpu.stage0.overrides and smoke.seeds == (0,)
    with pytest.raises(MaebenchError, match="no profile 'tpu' .*has: msmarco-gpu, smoke"):
        load_spec("scratch-mae", profile="tpu")
    bad = write_spec(tmp_path, profiles={"big": {"id": "big", "arms": []}})
    with pytest.raises(MaebenchError, match="profile 'big' cannot set 'arms'"):
        load_spec(str(bad), profile="big")
    no_id = write_spec(tmp_path, profiles={"big": {"scale": 10}})
    with pytest.raises(MaebenchError, match="profile 'big' must be a mapping with its own id"):
        load_spec(str(no_id), profile="big")
    unknown_task = write_spec(tmp_path, profiles={"big": {"id": "big", "evaluate": ["nosuch"]}})
    with pytest.raises(MaebenchError, match="unknown task 'nosuch'"):
        load_spec(str(unknown_task), profile="big")


def test_lab_spec_declares_its_design() -> None:
    spec = load_spec("scratch-mae")
    assert spec.backbone.vocab_size == 8192 and spec.stage0.budget_tokens == 8192000
    assert spec.pretrain_seed == 0 and spec.seeds == (0, 1, 2) and spec.zero_shot
    arms = {a.name: a for a in spec.arms}
    assert arms["stage0-only"].objective is None and arms["mlm"].overrides["encoder_mask"] == 0.3
    assert ("mlm", "stage0-only") in spec.primary and all(b == "mlm" for a, b in spec.primary[:-1])
    assert spec.finetune.pilot.arm == "mlm" and len(spec.finetune.pilot.learning_rates) == 3
    dapt = load_spec("scifact-dapt")
    assert dapt.confounds and "finished contrastive retriever" in dapt.confounds[0]


def test_spec_metric_and_design_errors(tmp_path) -> None:
    with pytest.raises(MaebenchError, match="metric 'x<script>' is not evaluated"):
        load_spec(str(write_spec(tmp_path, metric="x<script>")))
    with pytest.raises(MaebenchError, match="metric 'R@7' is not evaluated"):
        load_spec(str(write_spec(tmp_path, exploratory_metrics=["R@7"])))
    with pytest.raises(MaebenchError, match="exactly one of init"):
        load_spec(str(write_spec(tmp_path, backbone={"corpus": "tiny"})))
    with pytest.raises(MaebenchError, match="'nope' is not an arm"):
        load_spec(str(write_spec(tmp_path, primary=[["mlm", "nope"]])))


def test_a_pilot_of_another_recipe_is_neither_reused_nor_its_cards(tmp_path, monkeypatch) -> None:
    """A finished pilot answers for its recipe and setting only: after the spec's recipe changes
    it is run again under new card names; a record from before settings were stored is kept."""
    from benchmark.studies.pilot import pilot_card_name, pilot_path, pilot_setting, read_pilot

    monkeypatch.setenv("MAEBENCH_RESULTS_DIR", str(tmp_path / "results"))
    pilot = {"arm": "mlm", "learning_rates": [1.0e-3, 2.0e-3], "holdout": 0.25}
    specs = []
    for recipe in ("standard-cpu", "scratch-small"):
        folder = tmp_path / recipe
        folder.mkdir()
        specs.append(load_spec(str(write_spec(folder, finetune={"task": "tiny", "recipe": recipe,
                                                                 "pilot": pilot}))))
    first, changed = specs
    path = pilot_path(first)
    path.parent.mkdir(parents=True)
    record = {"scores": {"0.001": 0.5}, "chosen_lr": 0.001, "setting": pilot_setting(first)}
    path.write_text(json.dumps(record))
    assert read_pilot(first)["chosen_lr"] == 0.001
    assert read_pilot(changed) is None
    assert pilot_card_name(first, 1e-3) != pilot_card_name(changed, 1e-3)
    assert pilot_card_name(first, 1e-3).endswith("-lr1e-03")
    del record["setting"]  # written by an older maebench: nothing to compare, taken as it is
    path.write_text(json.dumps(record))
    assert read_pilot(changed)["chosen_lr"] == 0.001


def test_a_pilot_that_chose_the_edge_of_its_grid_says_so() -> None:
    from benchmark.studies.report import pilot_edge

    pilot = {"learning_rates": [3e-4, 1e-3, 2e-3], "scores": {}, "chosen_lr": 2e-3}
    assert "largest rate it tried (0.002)" in pilot_edge(pilot)
    assert "smallest" in pilot_edge({**pilot, "chosen_lr": 3e-4})
    assert pilot_edge({**pilot, "chosen_lr": 1e-3}) is None
    assert pilot_edge({"learning_rates": [1e-3], "chosen_lr": 1e-3}) is None  # nothing to bracket
    assert pilot_edge(None) is None

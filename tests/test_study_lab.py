"""The MAE lab's study design end to end on made-up data (issue 17): a backbone built from
nothing, a shared stage 0 with its head, one pre-training per arm on one span stream, zero-shot
scores and collapse diagnostics, a learning-rate pilot on held-out train queries, real
fine-tuning of every seed, two-level contrasts in a declared primary family, and a collapsed arm
reported as failed."""

from __future__ import annotations

import json

import pytest
import yaml


@pytest.fixture
def env(scifact_env):
    """The made-up scifact folder and models (tests/conftest.py)."""
    return scifact_env

FINETUNE = {"queries_per_step": 2, "group_size": 2, "query_max_length": 16, "passage_max_length": 32,
            "max_steps": 2, "save_steps": 2, "negatives_depth": 5}

SPEC = {
    "id": "lab", "description": "test", "question": "does it work?",
    "backbone": {"corpus": "scifact", "vocab_size": 200, "layers": 2, "hidden": 32, "heads": 2,
                 "ffn": 64, "max_positions": 64},
    "stage0": {"objective": "mlm", "budget_tokens": 256, "overrides": {"batch_size": 4, "max_length": 32}},
    "corpus": "scifact", "budget_tokens": 256, "pretrain_seed": 0,
    "pretrain_overrides": {"batch_size": 4, "max_length": 32},
    "arms": [{"name": "stage0-only", "objective": None},
             {"name": "mlm", "objective": "mlm", "overrides": {"encoder_mask": 0.3}},
             {"name": "bow", "objective": "bowpred"}],
    # random tiny models on 30 documents: only the planted collapse below may count as one
    "collapse_cosine": 1.0, "collapse_overlap": 1.0,
    "seeds": [0, 1],
    "finetune": {"task": "scifact", "recipe": "scratch-small", "overrides": FINETUNE,
                 "pilot": {"arm": "mlm", "learning_rates": [1.0e-3, 3.0e-3], "holdout": 0.25}},
    "evaluate": ["scifact"], "zero_shot": True, "baseline_arm": "mlm",
    "primary": [["bow", "mlm"], ["mlm", "stage0-only"]],
    "exploratory_metrics": ["R@100"],
}


@pytest.mark.slow
def test_the_lab_study_end_to_end(env, tmp_path, monkeypatch) -> None:
    from benchmark.catalog.registry import load_card
    from benchmark.core.paths import EMBEDDED_DATA_DIR
    from benchmark.studies.report import format_table
    from benchmark.studies.runner import StudyOptions, run_study
    from benchmark.studies.spec import load_spec, study_models_dir, study_results_dir

    monkeypatch.setenv("MAEBENCH_RESULTS_DIR", str(tmp_path / "results"))
    # pre-training text: the embedded tiny corpus (long enough for span pairs) plus the made-up
    # scifact documents, so the vocabulary covers what is fine-tuned and evaluated
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text((EMBEDDED_DATA_DIR / "tiny" / "corpus.jsonl").read_text()
                      + (env["data"] / "scifact" / "corpus.jsonl").read_text())
    spec = {**SPEC, "corpus": str(corpus), "backbone": {**SPEC["backbone"], "corpus": str(corpus)}}
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(spec))
    study = load_spec(str(path))
    log: list[str] = []
    # a tiny lab cannot pass its gates: this test is about the pipeline, so it goes on past them
    # (recorded as deviations; the gates have their own tests in tests/test_study_gates.py)
    report_file = run_study(study, StudyOptions(data_dir=env["data"], device="cpu",
                                                continue_past_gates=True), echo=log.append)
    report = json.loads(report_file.read_text())
    cards = study_models_dir(study)
    assert report["verdict"] == "uninformative" and report["gates"][0]["passed"] is False
    assert any("continued past a failed gate" in d["what"] for d in report["deviations"])
    assert report["registration"]["registered"] and not report["registration"]["changed"]
    log = [line for line in log if not line.startswith(("gate", "registered"))]
    findings = report["withheld_contrasts"]  # uninformative: kept apart, not shown as findings
    assert report["comparisons"] == {}

    assert log[0] == "backbone lab-backbone: built" and log[1] == "stage 0 lab-stage0: pre-trained"
    stage0 = load_card(cards / "lab-stage0.yaml").pretraining
    assert stage0.initialised_from == "lab-backbone" and stage0.mlm_head and stage0.head_warmup_steps == 0
    mlm, bow = (load_card(cards / f"lab-{a}-pt.yaml").pretraining for a in ("mlm", "bow"))
    assert mlm.initialised_from == bow.initialised_from == "lab-stage0"
    assert mlm.recipe["encoder_mask"] == 0.3 and bow.recipe["encoder_mask"] == 0.3
    assert mlm.tokens_seen == bow.tokens_seen and mlm.steps == bow.steps  # one span stream, one budget
    # pilot: train queries only, the winner used by every cell
    pilot = report["pilot"]
    assert pilot["split"] == "train" and pilot["n_held_out"] == 2 and pilot["n_train"] == 6
    assert pilot["chosen_lr"] in (1.0e-3, 3.0e-3) and set(pilot["scores"]) == {"0.001", "0.003"}
    for arm in ("stage0-only", "mlm", "bow"):
        for seed in (0, 1):
            record = load_card(cards / f"lab-{arm}-s{seed}.yaml").finetuning.record
            assert float(record.overrides["lr"]) == pilot["chosen_lr"] and record.seed == seed
            assert record.train_data.held_out_queries == 0
    assert load_card(cards / "lab-stage0-only-s0.yaml").finetuned_from == "lab-stage0"
    # zero-shot scores and diagnostics of every fine-tuned backbone
    results = study_results_dir(study)
    for backbone in ("lab-stage0", "lab-mlm-pt", "lab-bow-pt"):
        assert (results / backbone / "scifact.json").is_file()
    diagnostics = json.loads((results / "diagnostics.json").read_text())
    assert {"lab-stage0", "lab-mlm-pt", "lab-bow-pt", "lab-bow-s1"} <= set(diagnostics)
    assert load_card(cards / "lab-mlm-s0.yaml").retriever.passage_max_length == 64  # the positions
    assert report["arms"]["mlm"]["zero_shot"]["scifact"] is not None
    # statistics: the declared primary family with two-level intervals, the rest secondary
    primary = findings["comparisons"]["scifact"]
    assert [(r["arm"], r["against"]) for r in primary] == [("bow", "mlm"), ("mlm", "stage0-only")]
    for row in primary:
        assert row["ci_low"] <= row["diff"] <= row["ci_high"] and row["p_holm"] >= row["p_value"]
        assert row["seeds"] == [0, 1] and len(row["per_seed_a"]) == 2
    assert [(r["arm"], r["against"]) for r in findings["secondary"]["scifact"]] == [("stage0-only", "bow")]
    assert report["complete"] and report["arms"]["bow"]["pretrain_cpu_s_mean"] > 0
    assert "lab" in format_table(report) and "pilot" in format_table(report)
    # an exploratory metric: the same primary family on R@100, its own seeds and Holm
    deeper = findings["exploratory"]["R@100"]
    assert [(r["arm"], r["against"]) for r in deeper["comparisons"]["scifact"]] == \
        [("bow", "mlm"), ("mlm", "stage0-only")]
    assert all(r["p_holm"] >= r["p_value"] and r["ci_low"] <= r["diff"] <= r["ci_high"]
               for r in deeper["comparisons"]["scifact"])
    mlm_cells = [json.loads((results / f"lab-mlm-s{s}" / "scifact.json").read_text()) for s in (0, 1)]
    assert deeper["arms"]["mlm"]["scifact"]["per_seed"] == [c["metrics"]["R@100"] for c in mlm_cells]
    assert "uninformative" in format_table(report).splitlines()[0]
    # the backbones before fine-tuning: the same family, one backbone per arm, both metrics
    before = findings["zero_shot_comparisons"]
    assert set(before) == {"nDCG@10", "R@100"}
    for row in before["R@100"]["scifact"]:
        assert row["seeds"] == [0] and row["p_holm"] >= row["p_value"]
    mlm_pt = json.loads((results / "lab-mlm-pt" / "scifact.json").read_text())
    stage0 = json.loads((results / "lab-stage0" / "scifact.json").read_text())
    last = before["R@100"]["scifact"][-1]
    assert (last["arm"], last["against"]) == ("mlm", "stage0-only")
    assert last["diff"] == pytest.approx(mlm_pt["metrics"]["R@100"] - stage0["metrics"]["R@100"])

    # a backbone collapsed before fine-tuning is shown, not failed; a collapsed fine-tuned cell
    # fails its arm, said in one line, and the arm is kept out of both families
    # (judged from the measures; the line test stands in for a run's overlap when it is missing)
    diagnostics["lab-bow-pt"].update(centred_dimensions=1.01, top10_overlap=None)
    (results / "diagnostics.json").write_text(json.dumps(diagnostics))
    from benchmark.studies.report import build_report

    shown = build_report(study)["arms"]["bow"]
    assert shown["backbone_collapsed"] and not shown["failed"]
    diagnostics["lab-bow-s1"].update(centred_dimensions=1.05, top10_overlap=None)
    (results / "diagnostics.json").write_text(json.dumps(diagnostics))
    again = build_report(study)
    assert again["arms"]["bow"]["failed"] and "1.05 < 1.1 directions" in again["arms"]["bow"]["failure"]
    assert [r["arm"] for r in again["withheld_contrasts"]["comparisons"]["scifact"]
            if not r.get("failed")] == ["mlm"]
    assert any(r.get("failed") and r["arm"] == "bow"
               for r in again["withheld_contrasts"]["comparisons"]["scifact"])
    assert "FAILED" in format_table(again)
    # a re-run does nothing but rewrite the report
    log.clear()
    run_study(study, StudyOptions(data_dir=env["data"], device="cpu", continue_past_gates=True),
              echo=log.append)
    assert all(line.endswith("reused") for line in log if not line.startswith("gate"))
    # a cell's top-10 overlap comes from its diagnostics when they hold it (said once), and is
    # measured from its stored run when they do not
    diagnostics["lab-mlm-s0"].update(top10_overlap=0.8)
    del diagnostics["lab-mlm-s1"]
    (results / "diagnostics.json").write_text(json.dumps(diagnostics))
    strict = build_report(study.model_copy(update={"collapse_overlap": 0.5}))["arms"]["mlm"]
    assert strict["cells"][0]["top10_overlap"]["scifact"] == 0.8
    assert 0 <= strict["cells"][1]["top10_overlap"]["scifact"] <= 1
    assert strict["failed"] and strict["failure"].count("0.800 > 0.5") == 1

"""Gates, pre-registration and deviations (issue 25): a study whose premises failed is reported
as uninformative and shows no contrast; a runner stops at a failed gate before the next stage's
budget; a design changed after registration is a deviation; the gates never read test qrels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.studies import gates
from benchmark.studies.registration import register, registration_status
from benchmark.studies.report import build_report, format_table
from benchmark.studies.runner import run_study
from benchmark.studies.spec import StudyError, StudyOptions, load_spec
from tests.helpers.study import write_spec

FAILED_STAGE0 = {"gate": "stage 0 learnt more than word frequencies", "subject": "planted-stage0",
                 "measure": "MLM loss (nats)", "value": 6.9, "threshold": 5.5, "passed": False,
                 "unigram_entropy": 7.0, "data": "held-out documents' spans (never trained on)"}


@pytest.mark.slow
def test_a_planted_study_whose_stage0_gate_fails_is_uninformative_and_shows_no_contrast(
        study_env, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(gates, "judge_arms", lambda study: [])  # only the planted gate decides
    spec = load_spec(str(write_spec(tmp_path)))
    path = run_study(spec, StudyOptions())
    ran = json.loads(path.read_text())
    assert ran["verdict"] == "pending" and ran["comparisons"]["tiny"]  # nothing judged failed yet
    monkeypatch.setattr(gates, "judge_stage0", lambda study: dict(FAILED_STAGE0))
    report = build_report(spec)
    assert report["verdict"] == "uninformative"
    assert report["comparisons"] == {} and report["secondary"] == {}
    assert report["withheld_contrasts"]["comparisons"]["tiny"]  # kept apart for the audit trail
    table = format_table(report)
    first, second = table.splitlines()[:2]
    assert "uninformative" in first and "6.90 nats" in second and "5.50" in second
    assert " vs " not in table and "p_holm 0" not in table  # no contrast line anywhere
    # the page: the verdict first, the failed gate with its numbers, no contrast table
    from benchmark.site.build import SiteOptions, build_site

    report_file = tmp_path / "results" / "studies" / "tiny-study.json"
    report_file.write_text(json.dumps(report))
    out = tmp_path / "site"
    build_site(SiteOptions(results_dir=tmp_path / "results", out_dir=out))
    page = (out / "study-tiny-study.html").read_text()
    assert page.index("uninformative") < page.index("<h2>")
    assert "MLM loss 6.90 nats" in page and "Secondary contrasts" not in page


def test_stage0_gate_judges_held_out_loss_against_the_unigram_entropy(tmp_path, monkeypatch) -> None:
    from types import SimpleNamespace

    spec = load_spec("scratch-mae")
    monkeypatch.setattr(gates, "stage0_entropy", lambda study, heldout: {"nats": 7.0, "documents": 9})
    card = tmp_path / "card.yaml"
    monkeypatch.setattr(gates, "study_models_dir", lambda study: tmp_path)
    monkeypatch.setattr(gates, "stage0_card_name", lambda study: "card")
    card.write_text("planted")

    def planted(pretraining):
        import benchmark.catalog.registry as registry

        monkeypatch.setattr(registry, "load_card", lambda path: SimpleNamespace(pretraining=pretraining))

    planted(SimpleNamespace(heldout_end={"mlm": 5.4, "loss": 5.4}, loss_end=5.0))
    passed = gates.judge_stage0(spec)
    assert passed["passed"] is True and passed["threshold"] == 5.5 and passed["value"] == 5.4
    planted(SimpleNamespace(heldout_end={"mlm": 5.6}, loss_end=5.0))
    assert gates.judge_stage0(spec)["passed"] is False  # held-out decides, not the training loss
    planted(SimpleNamespace(heldout_end=None, loss_end=6.55))  # a study from before gates
    legacy = gates.judge_stage0(spec)
    assert legacy["passed"] is False and "kept no held-out documents" in legacy["data"]


@pytest.mark.slow
def test_the_runner_stops_at_a_failed_gate_before_the_next_stage(study_env, tmp_path, monkeypatch) -> None:
    failed = {"gate": "the arm's own loss moved", "subject": "bow", "objective": "bowpred",
              "term": "bow", "measure": "fall", "value": 0.01, "start": 7.0, "end": 6.99,
              "threshold": 0.3, "passed": False}
    monkeypatch.setattr(gates, "judge_arms", lambda study: [dict(failed)])
    spec = load_spec(str(write_spec(tmp_path, pretrain_seed=0)))
    with pytest.raises(StudyError, match="stopped at a failed gate.*fell \\+0.01 nats"):
        run_study(spec, StudyOptions())
    assert study_env == []  # no fine-tuning budget spent
    report = json.loads((tmp_path / "results" / "studies" / "tiny-study.json").read_text())
    assert report["verdict"] == "uninformative"
    path = run_study(spec, StudyOptions(continue_past_gates=True))
    report = json.loads(path.read_text())
    assert any(d["what"].startswith("continued past a failed gate") and not d["declared"]
               for d in report["deviations"])


def test_a_design_changed_after_registration_is_a_deviation(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MAEBENCH_RESULTS_DIR", str(tmp_path / "results"))
    spec = load_spec(str(write_spec(tmp_path)))
    path, new = register(spec)
    assert new and json.loads(path.read_text())["spec_sha256"] == registration_status(spec)["spec_sha256"]
    assert register(spec) == (path, False)  # never rewritten
    assert registration_status(spec)["changed"] is False
    prose = load_spec(str(write_spec(tmp_path, description="reworded")))
    assert registration_status(prose)["changed"] is False  # prose is not the design
    changed = load_spec(str(write_spec(tmp_path, seeds=[0, 1, 2])))
    status = registration_status(changed)
    assert status["changed"] and status["changed_fields"] == ["seeds"]
    from benchmark.studies.report import _deviations

    listed = _deviations(changed, status, {})
    assert len(listed) == 1 and "seeds" in listed[0]["what"] and not listed[0]["declared"]


@pytest.mark.slow
def test_every_cell_result_carries_the_spec_hash(study_env, tmp_path) -> None:
    from benchmark.studies.spec import spec_digest, study_results_dir

    spec = load_spec(str(write_spec(tmp_path)))
    run_study(spec, StudyOptions())
    results = sorted(study_results_dir(spec).glob("*/tiny.json"))
    assert results and all(spec_digest(spec) in json.loads(r.read_text())["provenance"]["command"]
                           for r in results)


@pytest.mark.slow
@pytest.mark.integration
def test_the_gates_never_read_test_qrels(tmp_path, monkeypatch) -> None:
    """The validation set and its BM25 reference come from the train split only: a loader that
    fails on any test split file lets the gate's scoring finish."""
    from benchmark.catalog.registry import get_card
    from benchmark.studies.pilot import score_on_queries
    from tests.helpers.paths import shared_dataset

    folder = shared_dataset("scifact")
    import benchmark.datasets.beir as beir
    import benchmark.training.negatives as negatives

    real = beir.load_qrels

    def refuse_test(path, *args, **kwargs):
        if Path(path).stem == "test":  # the split's file, not a folder such as pytest's
            raise AssertionError(f"a gate read test qrels: {path}")
        return real(path, *args, **kwargs)

    # negatives binds the name at import: patched there too, so that neither keeps the refusing
    # loader after this test (a later test whose tmp path holds 'pytest' then failed)
    monkeypatch.setattr(beir, "load_qrels", refuse_test)
    monkeypatch.setattr(negatives, "load_qrels", refuse_test)
    spec = load_spec("scratch-mae")
    data, held = gates.validation_queries(spec, "scifact", folder.parent)
    assert len(held) >= 200 and held <= set(data.dataset.qrels)
    score = score_on_queries(get_card("bm25"), data, held, "nDCG@10", StudyOptions())
    assert 0 < score <= 1


@pytest.mark.slow
def test_calibration_records_each_probe_and_resumes(study_env, tmp_path) -> None:
    """Calibration on a study from an init card: each arm x rate probe continues the init on
    held-out-split documents and records its own term's fall, one rate is chosen for every arm,
    and a second run redoes nothing."""
    from benchmark.studies.calibrate import calibrate, calibration_path

    spec = load_spec(str(write_spec(tmp_path, calibrate={
        "arm_learning_rates": [1e-4, 1e-3], "arm_tokens": 256, "finetune_learning_rates": [1e-3],
        "evaluations": 2})))
    lines: list[str] = []
    path = calibrate(spec, StudyOptions(), echo=lines.append)
    record = json.loads(path.read_text())
    assert path == calibration_path(spec)
    probes = {e["arm"]: e for e in record["arms"].values() if e["lr"] == 1e-3}
    assert set(probes) == {"mlm", "bow"} and probes["bow"]["term"] == "bow"
    assert probes["bow"]["fall"] == pytest.approx(probes["bow"]["start"] - probes["bow"]["end"])
    assert record["chosen_arm_lr"] in (1e-4, 1e-3) and len(record["arms"]) == 4
    curves = tmp_path / "results" / "studies" / "tiny-study" / "curves"
    assert len(list(curves.glob("tiny-study-cal-*.json"))) == 4
    again: list[str] = []
    calibrate(spec, StudyOptions(), echo=again.append)
    assert not any(line.startswith("calibrate arm") for line in again)

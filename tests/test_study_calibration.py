"""The calibration's verdict on the stage-0 budget (issue 25): the projection of a probe's held-out
curve to the gate, its cost in CPU-hours and corpus passes, the most hopeful probe deciding, and a
study whose calibration puts the gate beyond its means reported as not run."""

from __future__ import annotations

import json
import math

import pytest

from benchmark.studies.calibration_record import (
    calibration_lines,
    most_hopeful_projection,
    projected_tokens,
    stage0_projection,
)
from benchmark.studies.report import build_report, format_table, verdict_line
from benchmark.studies.spec import load_spec
from tests.helpers.study import write_spec


def _probe(intercept: float, slope: float, tokens: int = 1_000_000, cpu_s: float = 1000.0,
           threshold: float = 2.5) -> dict:
    """A probe whose held-out loss is exactly intercept + slope * ln(tokens) at six points."""
    points = [[0, 9.0]] + [[t, intercept + slope * math.log(t)]
                           for t in (100_000, 200_000, 400_000, 700_000, tokens)]
    return {"lr": 5e-4, "tokens": tokens, "steps": 100, "cpu_s": cpu_s, "heldout_mlm": points,
            "final_heldout_mlm": points[-1][1], "threshold": threshold, "unigram_entropy": 4.0,
            "passes": points[-1][1] <= threshold,
            "projected_tokens_to_pass": projected_tokens([tuple(p) for p in points], threshold)}


def test_a_log_linear_curve_projects_the_tokens_hours_and_passes_the_gate_needs() -> None:
    probe = _probe(10.0, -0.5)  # reaches 2.5 at ln t = 15
    assert probe["projected_tokens_to_pass"] == pytest.approx(math.exp(15), rel=1e-6)
    within = stage0_projection("p", probe, {"tokens": 1_000_000}, cpu_hours_budget=1.0)
    assert within["tokens_per_cpu_s"] == 1000.0
    assert within["projected_cpu_hours"] == pytest.approx(math.exp(15) / 1000 / 3600, abs=0.01)
    assert within["projected_epochs"] == pytest.approx(math.exp(15) / 1e6, abs=0.1)
    assert within["within_budget"] is True
    assert stage0_projection("p", probe, None, cpu_hours_budget=0.5)["within_budget"] is False
    flat = _probe(6.0, 0.0)  # does not fall: nothing can be projected, nothing is promised
    assert stage0_projection("p", flat, None, 25.0)["within_budget"] is None


def test_the_most_hopeful_probe_decides_not_the_lowest_loss(monkeypatch) -> None:
    spec = load_spec("scratch-mae-gated")
    # the longer probe ends lower but falls slowly; the shorter one ends higher and falls fast
    long_slow = _probe(5.2, -0.06, tokens=6_000_000, cpu_s=3000.0, threshold=4.0)
    short_fast = _probe(9.5, -0.35, tokens=1_000_000, cpu_s=500.0, threshold=4.0)
    assert long_slow["final_heldout_mlm"] < short_fast["final_heldout_mlm"]
    found = most_hopeful_projection(spec, {"long": long_slow, "short": short_fast},
                                    entropy={"tokens": 2_000_000})
    assert found["probe"] == "short"


def test_a_study_whose_calibration_puts_the_gate_beyond_its_means_is_not_run(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MAEBENCH_RESULTS_DIR", str(tmp_path / "results"))
    spec = load_spec(str(write_spec(tmp_path)))
    beyond = {"probe": "tiny-study-cal-stage0-b32c-lr5e-04", "projected_tokens": 2.0e8,
              "projected_cpu_hours": 27.3, "projected_epochs": 70.7, "corpus_tokens": 2_836_044,
              "tokens_per_cpu_s": 2043.5, "cpu_hours_budget": 25.0, "within_budget": False}
    summary = {"stage0": [], "arms": [], "finetune": [], "projection": beyond, "arm_threshold": 0.3}
    import benchmark.studies.calibration_record as record_module

    monkeypatch.setattr(record_module, "calibration_summary", lambda study: summary)
    report = build_report(spec)
    assert report["verdict"] == "infeasible"
    first = verdict_line(report)
    assert first.startswith("study tiny-study: not run") and "27.3 CPU-hours" in first
    assert "70.7 passes" in first and "25.0 CPU-hours declared" in first
    table = format_table(report)
    assert table.splitlines()[0] == first and "against the 25 declared: beyond" in table
    # within the budget, the study is only pending: the gates still decide once it has run
    summary["projection"] = {**beyond, "within_budget": True, "projected_cpu_hours": 9.0}
    assert build_report(spec)["verdict"] == "pending"
    json.dumps(report)  # the report stays JSON


def test_calibration_lines_name_each_probe_with_its_gate() -> None:
    summary = {"stage0": [{"probe": "s", "lr": 5e-4, "batch_size": 32, "scheduler": "constant",
                           "tokens": 5_733_713, "steps": 1464, "final_heldout_mlm": 6.3187,
                           "threshold": 5.5205, "unigram_entropy": 7.0205}],
               "arms": [{"probe": "a", "from": "s", "objective": "retromae", "lr": 1e-3, "term": "decoder",
                         "tokens": 1_000_000, "start": 7.1, "end": 6.7, "fall": 0.4, "passes": True}],
               "finetune": [], "projection": None, "arm_threshold": 0.3}
    lines = calibration_lines(summary)
    assert lines[0].startswith("stage 0 probe lr 0.0005 (batch 32, constant): held-out MLM 6.319")
    assert "(gate: <= 5.521, unigram entropy 7.021)" in lines[0]
    assert lines[1].startswith("arm probe retromae lr 0.001 from s: decoder 7.100 -> 6.700")
    assert lines[1].endswith("gate: >= 0.3) passes")


@pytest.mark.slow
def test_calibration_stops_after_stage0_when_its_gate_is_beyond_the_budget(study_env, tmp_path) -> None:
    """As a failed gate stops a study, a stage 0 projected beyond its CPU-hours stops calibration
    before any arm or fine-tuning probe is spent (the tiny probe's budget of 1e-9 CPU-hours cannot
    hold any projection); --continue-past-gates goes on."""
    from benchmark.studies.calibrate import calibrate
    from benchmark.studies.spec import StudyOptions

    spec = load_spec(str(write_spec(
        tmp_path, stage0={"objective": "mlm", "budget_tokens": 512,
                          "overrides": {"batch_size": 4, "max_length": 32}},
        calibrate={"stage0_learning_rates": [1e-3], "stage0_tokens": 512, "arm_learning_rates": [1e-3],
                   "arm_tokens": 256, "finetune_learning_rates": [1e-3], "evaluations": 2,
                   "stage0_cpu_hours": 1e-9})))
    lines: list[str] = []
    record = json.loads(calibrate(spec, StudyOptions(), echo=lines.append).read_text())
    assert len(record["stage0"]) == 1 and not record.get("arms") and not record.get("finetune")
    assert record["stopped"] and any(line.startswith("calibration stops") for line in lines)
    assert record["stage0_projection"]["within_budget"] is False

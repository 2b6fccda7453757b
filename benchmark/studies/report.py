"""A study's report (results/studies/<id>.json) and its text table.

Per arm and task: every seed's score beside the mean and sample standard deviation, the arm's
backbone scored without fine-tuning, its collapse diagnostics, and its pre-training cost in
CPU-seconds (process time, all threads) and FLOPs rather than wall time, which on a shared
machine measures the load. Per task, contrasts between arms with two-level statistics
(studies.contrasts: fine-tuning seeds resampled within arms, queries jointly across arms):
the pre-declared primary family, Holm-corrected over that family, and every other pair as a
secondary family with its own Holm correction. A fine-tuned cell whose ranking is the same for
every query, or whose document vectors lie on a line (studies.collapse, judged here from the
stored measurements with the spec's thresholds), marks the arm failed: it is reported with its
diagnostic and kept out of both families, never shown as an ordinary row. A backbone collapsed
before fine-tuning is shown beside its zero-shot score (an MLM backbone's [CLS] was never trained
for anything); a raw cosine above the spec's threshold is shown as anisotropy, not a failure.
"""

from __future__ import annotations

import functools
import json
import math
import zlib
from pathlib import Path
from typing import Any

from benchmark.studies.pilot import read_diagnostics, read_pilot
from benchmark.studies.spec import (
    Cell,
    StudySpec,
    cells,
    report_path,
    stage0_card_name,
    study_models_dir,
    study_results_dir,
)

N_BOOT = 10_000


def _read_result(study: StudySpec, card: str, task: str):
    from benchmark.results.result_store import result_path

    path = result_path(study_results_dir(study), card, task)
    if not path.is_file():
        return None
    stat = path.stat()
    return _read_result_file(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=512)
def _read_result_file(path: Path, mtime_ns: int, size: int):
    """A report reads each result for the arm table, the missing cells, every exploratory metric
    and the zero-shot contrasts: parse it once per file state (the key changes when the file
    does, so a long-running study never sees a stale result)."""
    from benchmark.results.result_store import read_result

    return read_result(path)


def _pretraining(study: StudySpec, name: str | None):
    from benchmark.catalog.registry import load_card

    path = study_models_dir(study) / f"{name}.yaml"
    return load_card(path).pretraining if name and path.is_file() else None


def _cost(study: StudySpec, cell: Cell) -> dict[str, Any]:
    cost: dict[str, Any] = {"pretrain_tokens": 0, "pretrain_steps": 0, "pretrain_wall_s": 0.0,
                            "pretrain_cpu_s": 0.0, "pretrain_flops": 0.0}
    pre = _pretraining(study, cell.pretrained)
    if pre is not None:
        cost.update(pretrain_tokens=pre.tokens_seen, pretrain_steps=pre.steps,
                    pretrain_wall_s=pre.wall_time_s, pretrain_cpu_s=pre.cpu_time_s,
                    pretrain_flops=pre.flops, hardware=pre.hardware)
    ft_yaml = study_models_dir(study) / f"{cell.finetuned}.yaml"
    if ft_yaml.is_file():  # the card validated (a `finetuning` that is a list is one line)
        from benchmark.catalog.registry import load_card

        finetuning = load_card(ft_yaml).finetuning
        record = finetuning.record if finetuning is not None else None
        cost["finetune_wall_s"] = record.wall_time_s if record is not None else None
    return cost


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _run_overlap(study: StudySpec, card: str, task: str) -> float | None:
    """Top-10 overlap between the queries of a stored run (a query-independent ranking)."""
    from benchmark.results.result_store import read_run, result_path
    from benchmark.studies.collapse import top_k_overlap

    result = _read_result(study, card, task)
    if result is None or result.run is None:
        return None
    ranked = read_run(result_path(study_results_dir(study), card, task), result)
    return top_k_overlap({q: dict(pairs) for q, pairs in ranked.items()})


def _judged(study: StudySpec, found: dict | None) -> dict[str, Any]:
    """The stored diagnostics of one card judged with this spec's thresholds (the stored verdict
    may come from older code or other thresholds)."""
    from benchmark.studies.collapse import judge

    if not found:
        return {"collapsed": False, "reason": None, "anisotropic": False}
    return judge(found, **study.collapse_thresholds())


def _arm_entry(study: StudySpec, arm, diagnostics: dict, per_query: dict) -> dict[str, Any]:
    metric = study.metric
    backbone = Cell(arm, study.seeds[0], study).backbone
    entry: dict[str, Any] = {"objective": arm.objective, "overrides": dict(arm.overrides),
                             "backbone": backbone, "tasks": {}, "cells": [], "zero_shot": {},
                             "diagnostics": None, "failed": False, "failure": None}
    found = diagnostics.get(backbone)
    if found:
        entry["diagnostics"] = {**found, **_judged(study, found)}
    failures = []
    # a backbone's own [CLS] may be collapsed before fine-tuning (an MLM backbone's [CLS] was
    # never trained): shown, and a failure only when the fine-tuned cells stay collapsed
    entry["backbone_collapsed"] = bool(entry["diagnostics"] and entry["diagnostics"]["collapsed"])
    for task in study.evaluate:
        zero = _read_result(study, backbone, task) if study.zero_shot else None
        if zero is not None:
            entry["zero_shot"][task] = zero.metrics.get(metric)
    for seed in study.seeds:
        cell = Cell(arm, seed, study)
        row: dict[str, Any] = {"seed": seed, "card": cell.finetuned, "pretrained_card": cell.pretrained,
                               **_cost(study, cell), "scores": {}, "top10_overlap": {}}
        found = diagnostics.get(cell.finetuned)
        for task in study.evaluate:
            result = _read_result(study, cell.finetuned, task)
            if result is None:
                continue
            row["scores"][task] = result.metrics.get(metric)
            row.setdefault("eval_wall_s", 0.0)
            row["eval_wall_s"] += round(sum(result.provenance.timings.values()), 1)
            row.setdefault("hardware", result.provenance.hardware)
            per_query.setdefault((arm.name, task), {})[seed] = result.per_query[metric]
            # the cell's diagnostics already hold the overlap of its run on their task (and judge
            # it below); re-read the run only for the other tasks or cells diagnosed before that
            stored = (found or {}).get("top10_overlap") if (found or {}).get("task") == task else None
            overlap = stored if stored is not None else _run_overlap(study, cell.finetuned, task)
            row["top10_overlap"][task] = overlap
            if stored is None and overlap is not None and overlap > study.collapse_overlap:
                failures.append(f"{cell.finetuned} on {task}: mean top-10 overlap between queries "
                                f"{overlap:.3f} > {study.collapse_overlap} (query-independent ranking)")
        row["diagnostics"] = {**found, **_judged(study, found)} if found else None
        if row["diagnostics"] and row["diagnostics"]["collapsed"]:
            failures.append(f"{cell.finetuned}: {row['diagnostics']['reason']}")
        entry["cells"].append(row)
    for task in study.evaluate:
        scores = [c["scores"][task] for c in entry["cells"] if task in c["scores"]]
        mean, std = _mean_std(scores)
        entry["tasks"][task] = {"mean": mean, "std": std, "n_seeds": len(scores), "per_seed": scores,
                                "spread": (max(scores) - min(scores)) if scores else None}
    for key, field in (("tokens", "pretrain_tokens"), ("wall_s", "pretrain_wall_s"),
                       ("cpu_s", "pretrain_cpu_s"), ("flops", "pretrain_flops")):
        values = [c[field] for c in entry["cells"] if c.get(field)]
        entry[f"pretrain_{key}_mean"] = sum(values) / len(values) if values else 0
    if failures:
        entry.update(failed=True, failure="; ".join(failures))
    return entry


def _contrast(study: StudySpec, task: str, a: str, b: str, per_query: dict,
              salt: str = "") -> dict[str, Any] | None:
    """One two-level contrast; `salt` tells the bootstrap seeds of other metrics or of the
    zero-shot scores from the primary's (which keep the seeds they always had)."""
    from benchmark.studies.contrasts import two_level_contrast

    mine, other = per_query.get((a, task), {}), per_query.get((b, task), {})
    if not mine or not other:
        return None
    seed = zlib.crc32(f"{study.id}|{task}|{a}|{b}{salt}".encode())  # stable across runs and machines
    row = two_level_contrast(mine, other, n_boot=N_BOOT, seed=seed)
    return {**row, "arm": a, "against": b, "seeds": sorted(set(mine) & set(other))}


def _families(study: StudySpec, arms: dict[str, dict], per_query: dict) -> tuple[dict, dict]:
    from benchmark.studies.contrasts import holm_family

    failed = {name for name, entry in arms.items() if entry["failed"]}
    primary_pairs = list(study.contrasts)
    declared = {frozenset(p) for p in primary_pairs}
    names = [a.name for a in study.arms]
    secondary_pairs = [(x, y) for i, x in enumerate(names) for y in names[i + 1:]
                       if frozenset((x, y)) not in declared]
    primary: dict[str, list] = {}
    secondary: dict[str, list] = {}
    for task in study.evaluate:
        for pairs, out in ((primary_pairs, primary), (secondary_pairs, secondary)):
            rows, skipped = [], []
            for a, b in pairs:
                if a in failed or b in failed:
                    skipped.append({"arm": a, "against": b, "failed": True,
                                    "failure": "; ".join(arms[x]["failure"] for x in (a, b) if x in failed)})
                    continue
                row = _contrast(study, task, a, b, per_query)
                if row is not None:
                    rows.append(row)
            out[task] = (holm_family(rows) if rows else []) + skipped
    return primary, secondary


def _primary_family(study: StudySpec, task: str, per_query: dict, salt: str) -> list[dict[str, Any]]:
    """The spec's primary contrasts among the arms present in `per_query`, Holm over them."""
    from benchmark.studies.contrasts import holm_family

    rows = [row for a, b in study.contrasts
            for row in [_contrast(study, task, a, b, per_query, salt)] if row is not None]
    return holm_family(rows) if rows else []


def _exploratory(study: StudySpec, arms: dict[str, dict]) -> dict[str, Any]:
    """Each exploratory metric: per arm and task the seeds' scores, their mean and the backbone's
    zero-shot score, and the primary family's contrasts (two-level, Holm within the metric).
    Failed arms are left out, as in the primary families."""
    out: dict[str, Any] = {}
    for metric in study.exploratory_metrics:
        per_query: dict[tuple[str, str], dict[int, dict[str, float]]] = {}
        scores: dict[str, dict[str, Any]] = {}
        for arm in study.arms:
            if arms[arm.name]["failed"]:
                continue
            backbone = Cell(arm, study.seeds[0], study).backbone
            for task in study.evaluate:
                zero = _read_result(study, backbone, task) if study.zero_shot else None
                entry = {"per_seed": [], "mean": None,
                         "zero_shot": zero.metrics.get(metric) if zero is not None else None}
                for seed in study.seeds:
                    result = _read_result(study, Cell(arm, seed, study).finetuned, task)
                    if result is None or metric not in result.per_query:
                        continue
                    entry["per_seed"].append(result.metrics.get(metric))
                    per_query.setdefault((arm.name, task), {})[seed] = result.per_query[metric]
                entry["mean"] = _mean_std(entry["per_seed"])[0]
                scores.setdefault(arm.name, {})[task] = entry
        out[metric] = {"arms": scores, "comparisons": {
            task: _primary_family(study, task, per_query, f"|{metric}") for task in study.evaluate}}
    return out


def _zero_shot_contrasts(study: StudySpec) -> dict[str, dict[str, list]]:
    """The primary family between the backbones as they are, before fine-tuning, for the primary
    and each exploratory metric (Holm within each): one backbone per arm, so the intervals cover
    the sampling of queries only. What pre-training alone gives the [CLS] vector."""
    out: dict[str, dict[str, list]] = {}
    if not study.zero_shot:
        return out
    for metric in (study.metric, *study.exploratory_metrics):
        per_query: dict[tuple[str, str], dict[int, dict[str, float]]] = {}
        for arm in study.arms:
            backbone = Cell(arm, study.seeds[0], study).backbone
            for task in study.evaluate:
                zero = _read_result(study, backbone, task)
                if zero is not None and metric in zero.per_query:
                    per_query[(arm.name, task)] = {0: zero.per_query[metric]}
        out[metric] = {task: _primary_family(study, task, per_query, f"|zero-shot|{metric}")
                       for task in study.evaluate}
    return out


def _deviations(study: StudySpec, registration: dict[str, Any], gates: dict[str, Any]) -> list[dict]:
    """Declared deviations (the spec's, with reasons), a design changed since its registration,
    and a run continued past a failed gate: every change after registration, none absorbed."""
    out = [{**d.model_dump(mode="json"), "declared": True} for d in study.deviations]
    if registration.get("changed"):
        out.append({"what": "the design changed after registration: "
                    + ", ".join(registration.get("changed_fields") or ["(fields)"])
                    + f" (registered sha256 {registration['spec_sha256'][:12]}, now "
                    f"{registration['current_sha256'][:12]})",
                    "when": "after " + str(registration.get("registered_at")),
                    "why": "not declared in the spec's deviations", "declared": False})
    for entry in gates.get("continued_past") or []:
        out.append({"what": f"continued past a failed gate: {entry}", "when": "at run time",
                    "why": "--continue-past-gates", "declared": False})
    return out


def build_report(study: StudySpec, data_dir: Path | None = None) -> dict[str, Any]:
    from benchmark.studies.gates import judge
    from benchmark.studies.registration import registration_status

    report = _build_report(study)
    gates = judge(study, data_dir)
    registration = registration_status(study)
    report["verdict"] = gates["verdict"]
    report["gates"] = gates["gates"]
    report["failed_gates"] = gates["failed"]
    report["registration"] = registration
    report["deviations"] = _deviations(study, registration, gates)
    from benchmark.studies.calibration_record import calibration_summary

    calibration = calibration_summary(study)
    if calibration:
        report["calibration"] = calibration
        projection = calibration.get("projection") or {}
        if report["verdict"] == "pending" and projection.get("within_budget") is False:
            # calibration says the stage-0 gate cannot pass within the declared means: the study
            # is not run, and that is its result (issue 25), not a finding about the objectives
            report["verdict"] = "infeasible"
    if gates["verdict"] == "uninformative":
        # the premises failed: no contrast is a finding, so none is reported as one (kept apart,
        # for the audit trail, never shown as a result)
        keys = ("comparisons", "secondary", "exploratory", "zero_shot_comparisons")
        report["withheld_contrasts"] = {k: report[k] for k in keys}
        report.update(comparisons={}, secondary={}, exploratory={}, zero_shot_comparisons={})
    return report


def _build_report(study: StudySpec) -> dict[str, Any]:
    metric = study.metric
    diagnostics = read_diagnostics(study)
    per_query: dict[tuple[str, str], dict[int, dict[str, float]]] = {}
    arms = {arm.name: _arm_entry(study, arm, diagnostics, per_query) for arm in study.arms}
    primary, secondary = _families(study, arms, per_query)
    missing = [f"{c.arm.name} s{c.seed}" for c in cells(study)
               if any(_read_result(study, c.finetuned, t) is None for t in study.evaluate)]
    stage0 = _pretraining(study, stage0_card_name(study))
    return {
        "schema_version": 2,
        "study": study.model_dump(mode="json"),
        "metric": metric,
        "budget": study.budget,
        "stage0": None if stage0 is None else {
            "card": stage0_card_name(study), "budget": study.stage0_budget, "tokens": stage0.tokens_seen,
            "steps": stage0.steps, "cpu_s": stage0.cpu_time_s, "flops": stage0.flops,
            "loss_start": stage0.loss_start, "loss_end": stage0.loss_end,
            "diagnostics": diagnostics.get(stage0_card_name(study))},
        "pilot": read_pilot(study),
        "arms": arms,
        "comparisons": primary,
        "secondary": secondary,
        "exploratory": _exploratory(study, arms),
        "zero_shot_comparisons": _zero_shot_contrasts(study),
        "missing_cells": missing,
        "complete": not missing,
        "method": (
            f"{metric} per arm: every fine-tuning seed's score, their mean and sample standard "
            "deviation. Contrasts: the effect is the mean over seeds of the per-query scores of one "
            "arm minus the other's; 95% interval and two-sided p from a hierarchical bootstrap "
            f"({N_BOOT} replicates, seeded per contrast): seeds resampled within each arm, queries "
            "resampled jointly; the primary family ("
            + ", ".join(f"{a} vs {b}" for a, b in study.contrasts)
            + ") is Holm-corrected over itself, every other pair forms the secondary family "
            "(Holm over it). A failed (collapsed) arm is kept out of both families. Exploratory "
            "metrics get the primary family's contrasts, Holm within each metric; so do the "
            "backbones' zero-shot scores (one backbone per arm: queries resampled only). "
            "Pre-training "
            "cost: process CPU-seconds and 6 x parameters x tokens FLOPs."),
    }


def write_report(study: StudySpec, data_dir: Path | None = None) -> Path:
    from benchmark.core.files import atomic_write

    report = build_report(study, data_dir)
    target = report_path(study)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, (json.dumps(report, indent=1, sort_keys=True) + "\n").encode("utf-8"))
    return target


def pilot_edge(pilot: dict[str, Any] | None) -> str | None:
    """A warning when the pilot chose the smallest or largest rate it tried: the best rate may lie
    outside the grid (recomputed from the stored scores, so older pilots get it too)."""
    if not pilot or "chosen_lr" not in pilot or len(pilot.get("learning_rates") or []) < 2:
        return None
    rates = sorted(float(r) for r in pilot["learning_rates"])
    chosen = float(pilot["chosen_lr"])
    if chosen not in (rates[0], rates[-1]):
        return None
    side, beyond = ("largest", "larger") if chosen == rates[-1] else ("smallest", "smaller")
    return (f"the pilot chose the {side} rate it tried ({chosen:g}); a {beyond} one was not "
            "tried and may be better")


ONE_SEED = ("one fine-tuning seed per arm: intervals and p-values cover the sampling of queries "
            "only, not training variance")


def report_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (task, arm) in the spec's order: the one reading of a report that the printed
    table and the site page both render (older reports without the newer fields included)."""
    rows = []
    for task in report["study"]["evaluate"]:
        comparisons = {c["arm"]: c for c in report["comparisons"].get(task, [])}
        for name in [a["name"] for a in report["study"]["arms"] if a["name"] in report["arms"]]:
            arm = report["arms"][name]
            stats = arm["tasks"].get(task, {})
            comp = comparisons.get(name, {})
            rows.append({
                "task": task, "arm": name,
                "objective": arm["objective"] or "none (no pre-training of its own)",
                "mean": stats.get("mean"), "std": stats.get("std"), "n_seeds": stats.get("n_seeds", 0),
                "spread": stats.get("spread"), "per_seed": stats.get("per_seed", []),
                "zero_shot": (arm.get("zero_shot") or {}).get(task),
                "tokens": arm.get("pretrain_tokens_mean"), "wall": arm.get("pretrain_wall_s_mean"),
                "cpu_s": arm.get("pretrain_cpu_s_mean"), "flops": arm.get("pretrain_flops_mean"),
                "against": comp.get("against", report["study"].get("baseline_arm")),
                "diff": comp.get("diff"), "ci_low": comp.get("ci_low"), "ci_high": comp.get("ci_high"),
                "p": comp.get("p_value"), "p_holm": comp.get("p_holm"),
                "failed": bool(arm.get("failed")), "failure": arm.get("failure"),
                "backbone_cls": describe_diagnostics(arm.get("diagnostics")),
            })
    return rows


def describe_diagnostics(found: dict[str, Any] | None) -> str | None:
    """One line on a card's [CLS] geometry for the table and the page (older diagnostics without
    the centred measures included)."""
    if not found:
        return None
    parts = [f"raw cosine {found['mean_pairwise_cosine']:.4f}"
             + (" (anisotropic: one vector shared by every document)" if found.get("anisotropic") else "")]
    if found.get("centred_dimensions") is not None:
        parts.append(f"{found['centred_dimensions']:.1f} centred dimensions")
    if found.get("spread") is not None:
        parts.append(f"spread {found['spread']:.2g}")
    if found.get("top10_overlap") is not None:
        parts.append(f"top-10 overlap {found['top10_overlap']:.3f}")
    if found.get("collapsed"):
        parts.append(f"COLLAPSED: {found['reason']}")
    return ", ".join(parts)


def verdict_line(report: dict[str, Any]) -> str:
    """The study's verdict in one line: the first thing the CLI and the page say."""
    study = report["study"]["id"]
    verdict = report.get("verdict")
    if verdict == "uninformative":
        return (f"study {study}: uninformative: a gate failed, so the manipulation did not happen and "
                "its contrasts are not findings")
    if verdict == "informative":
        return f"study {study}: every gate passed; its contrasts below are its findings"
    if verdict == "infeasible":
        p = (report.get("calibration") or {}).get("projection") or {}
        return (f"study {study}: not run: calibration projects that stage 0 needs about "
                f"{p.get('projected_tokens') or 0:,.0f} tokens ({p.get('projected_cpu_hours')} CPU-hours, "
                f"{p.get('projected_epochs')} passes over its corpus) to pass its gate, beyond the "
                f"{p.get('cpu_hours_budget')} CPU-hours declared; no finding about the objectives")
    if verdict == "pending":
        return f"study {study}: gates not all judged yet; no contrast is a finding until they pass"
    return f"study {study}: written before gates existed"


def format_table(report: dict[str, Any]) -> str:
    """The report's main table as text (what `maebench study` prints): scores x100, the primary
    contrast of each arm with its 95% interval and Holm p, pre-training CPU-seconds and PFLOPs."""
    metric = report["metric"]
    lines = [verdict_line(report)]
    lines += [f"  failed gate: {g}" for g in report.get("failed_gates") or []]
    if report.get("calibration"):
        from benchmark.studies.calibration_record import calibration_lines

        lines += [f"  calibration: {line}" for line in calibration_lines(report["calibration"])]
    lines += [f"study {report['study']['id']}: {metric} x100, budget {report['budget']} per arm"
             + ("" if report["complete"] else f" (missing: {', '.join(report['missing_cells'])})")]
    if report.get("pilot"):
        lines.append(f"fine-tuning learning rate {report['pilot']['chosen_lr']:g}, chosen by a pilot on "
                     f"{report['pilot']['n_held_out']} held-out train queries")
        if edge := pilot_edge(report["pilot"]):
            lines.append(f"note: {edge}")
    if len(report["study"].get("seeds", [])) == 1:
        lines.append(ONE_SEED)
    withheld = report.get("verdict") == "uninformative"  # scores only: no contrast is a finding
    lines.append(f"{'task':8s} {'arm':13s} {'mean':>6s} {'std':>5s} {'per seed':>20s} {'0-shot':>6s} "
                 + ("" if withheld else f"{'vs':>13s} {'diff':>6s} {'95% CI':>15s} {'p_holm':>7s} ")
                 + f"{'pt CPU-s':>8s} {'PFLOP':>6s}")

    def pct(value: float | None, signed: bool = False) -> str:
        return "" if value is None else (f"{value * 100:+.2f}" if signed else f"{value * 100:.2f}")

    def contrast(r: dict[str, Any]) -> str:
        return (f"{r['arm']} vs {r['against']}: {pct(r['diff'], True)} "
                f"[{pct(r['ci_low'], True)},{pct(r['ci_high'], True)}] p_holm {r['p_holm']:.4f}")

    for row in report_rows(report):
        seeds = " ".join(pct(v) for v in row["per_seed"])
        if row["failed"]:
            lines.append(f"{row['task']:8s} {row['arm']:13s} FAILED ({seeds or 'no seeds'}): "
                         f"{row['failure']}")
            continue
        ci = "" if row["ci_low"] is None else f"[{pct(row['ci_low'], True)},{pct(row['ci_high'], True)}]"
        against = "" if row["diff"] is None else str(row["against"])[:13]
        holm = row["p_holm"]
        contrast_cols = ("" if withheld else
                         f"{against:>13s} {pct(row['diff'], True):>6s} {ci:>15s} "
                         f"{'' if holm is None else f'{holm:.4f}':>7s} ")
        lines.append(
            f"{row['task']:8s} {row['arm']:13s} {pct(row['mean']):>6s} {pct(row['std']):>5s} "
            f"{seeds:>20s} {pct(row['zero_shot']):>6s} {contrast_cols}"
            f"{f'{cpu:,.0f}' if (cpu := row['cpu_s']) else '':>8s} "
            f"{f'{flops / 1e15:.2f}' if (flops := row['flops']) else '':>6s}")
    described = {row["arm"]: row["backbone_cls"] for row in report_rows(report) if row["backbone_cls"]}
    if described:
        lines.append("backbone [CLS] before fine-tuning (document sample; studies.collapse):")
        lines += [f"  {arm}: {text}" for arm, text in described.items()]
    for metric, found in (report.get("exploratory") or {}).items():
        lines.append(f"exploratory {metric} x100 (not the study's answer; primary contrasts, Holm "
                     "within this metric):")
        for task, rows in found["comparisons"].items():
            for arm, by_task in found["arms"].items():
                entry = by_task.get(task) or {}
                seeds = " ".join(pct(v) for v in entry.get("per_seed", []))
                lines.append(f"  {task} {arm}: {pct(entry.get('mean'))} ({seeds}), zero-shot "
                             f"{pct(entry.get('zero_shot')) or '-'}")
            lines += [f"  {task} {contrast(r)}" for r in rows]
    for metric, by_task in (report.get("zero_shot_comparisons") or {}).items():
        rows = [(task, r) for task, found in by_task.items() for r in found]
        if rows:
            lines.append(f"zero-shot {metric} x100, backbones before fine-tuning (queries only, "
                         "Holm within this metric):")
        lines += [f"  {task} {contrast(r)}" for task, r in rows]
    secondary = [r for rows in (report.get("secondary") or {}).values() for r in rows if not r.get("failed")]
    if secondary:
        lines.append("secondary contrasts (Holm over the secondary family):")
        lines += [f"  {contrast(r)}" for r in secondary]
    return "\n".join(lines)

"""`maebench study <spec>`: arms x seeds, each cell pretrain -> finetune -> run, then a report.

Layout (so a study never floods the main leaderboard or registry):
  models/studies/<id>/<card>.yaml              the cells' cards (pre-trained and fine-tuned)
  results/studies/<id>/<card>/<task>.json      the cells' results (runner format)
  results/studies/<id>.json                    the study report
Weights live under the maebench home like every trained checkpoint.

Every step of a cell is skipped when its output exists (a card is written only after its
weights, a result only after its run), and an interrupted step resumes from its own staging
folder (pretrain: accelerate state + progress.json; finetune: its work folder), so killing the
study at any point (kill -9 included) and starting it again redoes at most the unfinished step.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from benchmark.errors import MaebenchError
from benchmark.paths import EMBEDDED_DATA_DIR, models_dir, results_dir

log = logging.getLogger(__name__)
STUDIES_DIR = EMBEDDED_DATA_DIR / "studies"
Scalar = str | int | float | bool


class StudyError(MaebenchError):
    """A study spec is malformed or names something unknown."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Arm(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]{0,20}$")
    objective: str | None = Field(description="a pre-training objective, or null: fine-tune only")
    overrides: dict[str, Scalar] = Field(default_factory=dict)


class FinetuneSpec(_Strict):
    task: str
    recipe: str
    overrides: dict[str, Scalar] = Field(default_factory=dict)


class StudySpec(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]{0,30}$")
    description: str
    init: str = Field(description="the card every arm starts from")
    corpus: str = Field(description="pre-training corpus: task name(s) or a BEIR corpus.jsonl")
    budget_tokens: int = Field(gt=0, description="pre-training tokens per arm at scale 1")
    scale: float = Field(default=1.0, gt=0, description="multiplies budget_tokens (the GPU knob)")
    pretrain_overrides: dict[str, Scalar] = Field(default_factory=dict)
    arms: tuple[Arm, ...]
    seeds: tuple[int, ...] = Field(min_length=1)
    finetune: FinetuneSpec
    evaluate: tuple[str, ...] = Field(min_length=1)
    baseline_arm: str
    metric: str = "nDCG@10"
    notes: str | None = None
    profiles: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="named scale profiles: the same study at another scale (`--profile`), each "
        "with its own id so that its cells never mix with the default ones",
    )

    @model_validator(mode="after")
    def _arms(self) -> StudySpec:
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError("arm names must be unique")
        if self.baseline_arm not in names:
            raise ValueError(f"baseline_arm '{self.baseline_arm}' is not an arm")
        return self

    @property
    def budget(self) -> str:
        return f"{int(round(self.budget_tokens * self.scale))} tokens"


# what a profile may change: everything but the arms (the objectives are the study's question)
_PROFILE_FIELDS = frozenset(StudySpec.model_fields) - {"arms", "profiles", "description"}


def apply_profile(raw: dict[str, Any], profile: str, origin: str) -> None:
    """Merge the spec's named profile into it: the one switch between the CPU study and the same
    study at GPU scale (finetune and pretrain_overrides merge key by key, the rest replaces)."""
    profiles = raw.get("profiles") or {}
    if not isinstance(profiles, dict) or profile not in profiles:
        known = ", ".join(sorted(profiles)) if isinstance(profiles, dict) and profiles else "none"
        raise StudyError(f"{origin}: no profile '{profile}' (this spec has: {known})")
    values = profiles[profile]
    if not isinstance(values, dict) or "id" not in values:
        raise StudyError(f"{origin}: profile '{profile}' must be a mapping with its own id")
    for key, value in values.items():
        if key not in _PROFILE_FIELDS:
            raise StudyError(f"{origin}: profile '{profile}' cannot set '{key}'")
        if key in ("finetune", "pretrain_overrides") and isinstance(value, dict):
            raw[key] = {**(raw.get(key) or {}), **value}
        else:
            raw[key] = value


def load_spec(
    spec: str, overrides: dict[str, str] | None = None, profile: str | None = None
) -> StudySpec:
    """A spec file path, or the name of a bundled spec (benchmark/data/studies/<name>.yaml);
    `profile` applies one of the spec's named profiles, then `overrides` set top-level fields
    (`scale=100`, `corpus=msmarco`, ...); the result is validated."""
    import yaml

    from benchmark.validation import load_yaml_mapping, validate

    path = Path(spec)
    if not path.is_file():
        path = STUDIES_DIR / f"{spec}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in STUDIES_DIR.glob("*.yaml")))
        raise StudyError(f"no study spec '{spec}' (a file, or one of: {known})")
    raw = load_yaml_mapping(path.read_text(encoding="utf-8"), str(path), StudyError, "a study spec")
    if profile:
        apply_profile(raw, profile, str(path))
    if overrides and "id" not in overrides:
        raise StudyError(
            "a study with changed settings is another study: add --set id=<new id> so that its "
            "cells do not mix with those of '" + str(raw.get("id")) + "'"
        )
    for key, value in (overrides or {}).items():
        if key not in StudySpec.model_fields or key in ("arms", "finetune"):
            if key.startswith("finetune."):
                raw.setdefault("finetune", {})[key.split(".", 1)[1]] = value
                continue
            raise StudyError(f"cannot set '{key}' on a study spec")
        raw[key] = yaml.safe_load(value) if key in ("evaluate", "seeds", "pretrain_overrides") else value
    study = validate(raw, StudySpec, str(path), StudyError)
    check_spec(study, str(path))
    return study


def check_spec(study: StudySpec, origin: str) -> None:
    """Unknown tasks, recipes or objectives are one-line errors before any work."""
    from benchmark.tasks import all_tasks
    from benchmark.training.objectives import OBJECTIVES
    from benchmark.training.recipes import available_recipes

    tasks = {t.name for t in all_tasks()}
    for task in (study.finetune.task, *study.evaluate):
        if task not in tasks:
            raise StudyError(f"{origin}: unknown task '{task}' (known: {', '.join(sorted(tasks))})")
    if study.finetune.recipe not in available_recipes():
        raise StudyError(f"{origin}: unknown fine-tuning recipe '{study.finetune.recipe}' "
                         f"(known: {', '.join(available_recipes())})")
    for arm in study.arms:
        if arm.objective is not None and arm.objective not in OBJECTIVES:
            raise StudyError(f"{origin}: arm '{arm.name}': unknown objective '{arm.objective}' "
                             f"(known: {', '.join(OBJECTIVES)})")


# --------------------------------------------------------------------------- cells


@dataclass(frozen=True)
class Cell:
    arm: Arm
    seed: int
    study: StudySpec

    @property
    def pretrained(self) -> str | None:
        return None if self.arm.objective is None else f"{self.study.id}-{self.arm.name}-s{self.seed}-pt"

    @property
    def finetuned(self) -> str:
        return f"{self.study.id}-{self.arm.name}-s{self.seed}"


def study_models_dir(study: StudySpec) -> Path:
    return models_dir() / "studies" / study.id


def study_results_dir(study: StudySpec) -> Path:
    return results_dir() / "studies" / study.id


def report_path(study: StudySpec) -> Path:
    return results_dir() / "studies" / f"{study.id}.json"


def cells(study: StudySpec) -> list[Cell]:
    """Seed-major order: every arm's first seed finishes before any second seed starts, so an
    interrupted study still has one complete replicate of the comparison."""
    return [Cell(arm, seed, study) for seed in study.seeds for arm in study.arms]


@dataclass
class StudyOptions:
    data_dir: Path | None = None
    device: str | None = None
    only: str | None = None  # "pretrain": run only the pre-training steps
    max_cells: int | None = None


def _load(name: str, folder: Path):
    from benchmark.registry import load_card

    return load_card(folder / f"{name}.yaml")


def run_cell(cell: Cell, options: StudyOptions) -> list[str]:
    """Run what is missing of one cell; returns what was done (empty: reused)."""
    from benchmark.registry import get_card

    study = cell.study
    cards = study_models_dir(study)
    done: list[str] = []
    init = get_card(study.init)
    backbone = init
    if cell.pretrained:
        if not (cards / f"{cell.pretrained}.yaml").is_file():
            from benchmark.training.pretrain import PretrainOptions, pretrain_card

            overrides = {**study.pretrain_overrides, **cell.arm.overrides}
            pretrain_card(init, PretrainOptions(
                objective=cell.arm.objective, corpus=study.corpus, budget=study.budget,
                name=cell.pretrained, seed=cell.seed, overrides={k: str(v) for k, v in overrides.items()},
                data_dir=options.data_dir, device=options.device, resume=True, models_dir=cards,
            ))
            done.append(f"pretrain {cell.pretrained}")
        backbone = _load(cell.pretrained, cards)
    if options.only == "pretrain":
        return done
    if not (cards / f"{cell.finetuned}.yaml").is_file():
        from benchmark.training.finetune import finetune_card

        finetune_card(backbone, study.finetune.task, study.finetune.recipe, seed=cell.seed,
                      name=cell.finetuned,
                      overrides={k: str(v) for k, v in study.finetune.overrides.items()} or None,
                      data_dir=options.data_dir, device=options.device, models_dir=cards,
                      progress=False)
        done.append(f"finetune {cell.finetuned}")
    card = _load(cell.finetuned, cards)
    from benchmark.results import result_path
    from benchmark.runner import RunOptions, run_task
    from benchmark.tasks import get_task

    for task in study.evaluate:
        target = result_path(study_results_dir(study), card.name, task)
        if target.is_file():
            continue
        run_task(card, get_task(task), RunOptions(
            results_dir=study_results_dir(study), data_dir=options.data_dir, device=options.device,
            command=f"maebench study {study.id}"))
        done.append(f"run {card.name} on {task}")
    return done


def _lock(study: StudySpec):
    """One runner per study: two would train the same cell into the same staging folder. An
    flock dies with its process, so a kill -9 never leaves a stale lock behind."""
    import fcntl

    from benchmark.paths import checkpoints_dir

    checkpoints_dir().mkdir(parents=True, exist_ok=True)
    handle = (checkpoints_dir() / f".study-{study.id}.lock").open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        handle.close()
        raise StudyError(f"study '{study.id}' is already running in another process") from exc
    return handle


def run_study(study: StudySpec, options: StudyOptions, echo=print) -> Path | None:
    """Every missing cell in order, then the report (None when cells are still missing)."""
    lock = _lock(study)  # held until this process ends
    todo = cells(study)
    for index, cell in enumerate(todo):
        if options.max_cells is not None and index >= options.max_cells:
            break
        done = run_cell(cell, options)
        echo(f"cell {cell.arm.name} seed {cell.seed}: " + (", ".join(done) if done else "reused"))
    if options.only == "pretrain":
        lock.close()
        return None
    path = write_report(study)
    lock.close()
    return path


# --------------------------------------------------------------------------- report


def _read_result(study: StudySpec, card: str, task: str):
    from benchmark.results import read_result, result_path

    path = result_path(study_results_dir(study), card, task)
    return read_result(path) if path.is_file() else None


def _cost(study: StudySpec, cell: Cell) -> dict[str, Any]:
    from benchmark.registry import load_card

    cards = study_models_dir(study)
    cost: dict[str, Any] = {"pretrain_tokens": 0, "pretrain_steps": 0, "pretrain_wall_s": 0.0}
    if cell.pretrained and (cards / f"{cell.pretrained}.yaml").is_file():
        pre = load_card(cards / f"{cell.pretrained}.yaml").pretraining
        cost.update(pretrain_tokens=pre.tokens_seen, pretrain_steps=pre.steps,
                    pretrain_wall_s=pre.wall_time_s, hardware=pre.hardware)
    ft_yaml = cards / f"{cell.finetuned}.yaml"
    if ft_yaml.is_file():
        import yaml

        raw = yaml.safe_load(ft_yaml.read_text(encoding="utf-8"))
        # the fine-tuning record (the card also carries its backbone's pretraining block)
        cost["finetune_wall_s"] = _find_key(raw.get("finetuning") or {}, "wall_time_s")
    return cost


def _find_key(raw: Any, key: str) -> Any:
    """A value recorded somewhere in a card written by another command (finetune's record)."""
    if isinstance(raw, dict):
        if key in raw:
            return raw[key]
        for value in raw.values():
            found = _find_key(value, key)
            if found is not None:
                return found
    return None


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def build_report(study: StudySpec) -> dict[str, Any]:
    """Per arm and task: mean / sample std over seeds, per-seed scores and spread; each arm vs
    the baseline arm: a paired randomization test over queries on the seed-averaged per-query
    scores (seeds present in both arms only), Holm-corrected over the arms, per task."""
    import numpy as np

    from benchmark.stats import holm, paired_test

    metric = study.metric
    arms: dict[str, dict[str, Any]] = {}
    per_query: dict[tuple[str, str], dict[int, dict[str, float]]] = {}
    for arm in study.arms:
        entry: dict[str, Any] = {"objective": arm.objective, "tasks": {}, "cells": []}
        for seed in study.seeds:
            cell = Cell(arm, seed, study)
            cost = _cost(study, cell)
            row: dict[str, Any] = {"seed": seed, "card": cell.finetuned, "pretrained_card": cell.pretrained,
                                   **cost, "scores": {}}
            for task in study.evaluate:
                result = _read_result(study, cell.finetuned, task)
                if result is None:
                    continue
                row["scores"][task] = result.metrics.get(metric)
                row.setdefault("eval_wall_s", 0.0)
                row["eval_wall_s"] += round(sum(result.provenance.timings.values()), 1)
                row.setdefault("hardware", result.provenance.hardware)
                per_query.setdefault((arm.name, task), {})[seed] = result.per_query[metric]
            entry["cells"].append(row)
        for task in study.evaluate:
            scores = [c["scores"][task] for c in entry["cells"] if task in c["scores"]]
            mean, std = _mean_std(scores)
            entry["tasks"][task] = {
                "mean": mean, "std": std, "n_seeds": len(scores), "per_seed": scores,
                "spread": (max(scores) - min(scores)) if scores else None,
            }
        tokens = [c["pretrain_tokens"] for c in entry["cells"] if c["pretrain_tokens"]]
        walls = [c["pretrain_wall_s"] for c in entry["cells"] if c["pretrain_wall_s"]]
        entry["pretrain_tokens_mean"] = sum(tokens) / len(tokens) if tokens else 0
        entry["pretrain_wall_s_mean"] = sum(walls) / len(walls) if walls else 0.0
        arms[arm.name] = entry

    comparisons: dict[str, list[dict[str, Any]]] = {}
    for task in study.evaluate:
        base = per_query.get((study.baseline_arm, task), {})
        rows = []
        for arm in study.arms:
            if arm.name == study.baseline_arm:
                continue
            mine = per_query.get((arm.name, task), {})
            seeds = sorted(set(mine) & set(base))
            if not seeds:
                continue
            queries = sorted(set.intersection(*(set(mine[s]) & set(base[s]) for s in seeds)))
            a = np.mean([[mine[s][q] for q in queries] for s in seeds], axis=0)
            b = np.mean([[base[s][q] for q in queries] for s in seeds], axis=0)
            result = paired_test(a, b, task=task, metric=metric).as_dict()
            result.update(arm=arm.name, seeds=seeds, n_queries=len(queries))
            rows.append(result)
        for row, adjusted in zip(rows, holm([r["p_value"] for r in rows]), strict=True):
            row["p_holm"] = adjusted
        comparisons[task] = rows

    missing = [f"{c.arm.name} s{c.seed}" for c in cells(study)
               if any(_read_result(study, c.finetuned, t) is None for t in study.evaluate)]
    return {
        "schema_version": 1,
        "study": study.model_dump(mode="json"),
        "metric": metric,
        "budget": study.budget,
        "arms": arms,
        "comparisons": comparisons,
        "missing_cells": missing,
        "complete": not missing,
        "method": (f"{metric} per arm: mean and sample standard deviation over seeds; significance: "
                   "paired sign-flip randomization test (benchmark.stats, seeded) on the per-query "
                   f"{metric} averaged over the seeds both arms have, each arm against "
                   f"'{study.baseline_arm}', Holm-adjusted over the arms of a task"),
    }


def write_report(study: StudySpec) -> Path:
    from benchmark.results import atomic_write

    report = build_report(study)
    target = report_path(study)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(target, (json.dumps(report, indent=1, sort_keys=True) + "\n").encode("utf-8"))
    return target


def report_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (task, arm) in the spec's order: the one reading of a report that the printed
    table and the site page both render."""
    rows = []
    for task in report["study"]["evaluate"]:
        comparisons = {c["arm"]: c for c in report["comparisons"].get(task, [])}
        for name in [a["name"] for a in report["study"]["arms"] if a["name"] in report["arms"]]:
            arm = report["arms"][name]
            stats = arm["tasks"].get(task, {})
            comp = comparisons.get(name, {})
            rows.append({
                "task": task, "arm": name, "objective": arm["objective"] or "none (fine-tune only)",
                "mean": stats.get("mean"), "std": stats.get("std"), "n_seeds": stats.get("n_seeds", 0),
                "spread": stats.get("spread"), "per_seed": stats.get("per_seed", []),
                "tokens": arm.get("pretrain_tokens_mean"), "wall": arm.get("pretrain_wall_s_mean"),
                "diff": comp.get("diff"), "p": comp.get("p_value"), "p_holm": comp.get("p_holm"),
            })
    return rows


def format_table(report: dict[str, Any]) -> str:
    """The report's main table as text (what `maebench study` prints)."""
    metric = report["metric"]
    lines = [f"study {report['study']['id']}: {metric} x100, budget {report['budget']} per arm"
             + ("" if report["complete"] else f" (missing: {', '.join(report['missing_cells'])})")]
    header = (f"{'task':8s} {'arm':14s} {'mean':>6s} {'std':>5s} {'seeds':>5s} {'per seed':>14s} "
              f"{'diff':>6s} {'p':>7s} {'p_holm':>7s} {'pt tokens':>9s} {'pt s':>6s}")
    lines.append(header)

    def pct(value: float | None, signed: bool = False) -> str:
        return "" if value is None else (f"{value * 100:+.2f}" if signed else f"{value * 100:.2f}")

    for row in report_rows(report):
        seeds = " ".join(pct(v) for v in row["per_seed"])
        p, holm = row["p"], row["p_holm"]
        lines.append(
            f"{row['task']:8s} {row['arm']:14s} {pct(row['mean']):>6s} {pct(row['std']):>5s} "
            f"{row['n_seeds']:>5d} {seeds:>14s} {pct(row['diff'], True):>6s} "
            f"{'' if p is None else f'{p:.4f}':>7s} {'' if holm is None else f'{holm:.4f}':>7s} "
            f"{row['tokens'] or 0:>9,.0f} {row['wall'] or 0:>6,.0f}"
        )
    return "\n".join(lines)

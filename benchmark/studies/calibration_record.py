"""The calibration record (results/studies/<id>/calibration.json) read, written and judged: the
projection of a stage-0 probe's held-out curve to the gate and its cost, and the summary the
report, the CLI and the page show. Apart from studies.calibrate, which runs the probes, so that the
report can read a calibration without importing the runner (report -> calibrate -> runner ->
report was a cycle)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from benchmark.studies.spec import StudySpec, study_results_dir


def calibration_path(study: StudySpec) -> Path:
    return study_results_dir(study) / "calibration.json"


def read_record(study: StudySpec) -> dict[str, Any]:
    from benchmark.studies.stored import read_json_file

    path = calibration_path(study)
    if not (path.exists() or path.is_symlink()):
        return {}
    found = read_json_file(path, "a calibration record (remove it to calibrate again)")
    return found if isinstance(found, dict) else {}


def write_record(study: StudySpec, record: dict[str, Any]) -> None:
    from benchmark.core.files import atomic_write

    path = calibration_path(study)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode("utf-8"))


def projected_tokens(points: list[tuple[float, float]], threshold: float) -> float | None:
    """Tokens at which a least-squares fit loss = a + b ln(tokens) over the second half of the
    held-out curve reaches `threshold` (None when the curve does not fall). An extrapolation:
    losses flatten with training, so it is a lower bound on the budget, not a promise."""
    tail = [(t, y) for t, y in points if t > 0][len(points) // 2 - 1:] if len(points) > 2 else points
    tail = [(math.log(t), y) for t, y in tail if t > 0]
    if len(tail) < 2:
        return None
    mx = sum(x for x, _ in tail) / len(tail)
    my = sum(y for _, y in tail) / len(tail)
    sxx = sum((x - mx) ** 2 for x, _ in tail)
    if sxx == 0:
        return None
    b = sum((x - mx) * (y - my) for x, y in tail) / sxx
    if b >= 0:
        return None
    a = my - b * mx
    exponent = (threshold - a) / b
    return float(math.exp(exponent)) if exponent < 700 else float("inf")


def stage0_projection(name: str, probe: dict[str, Any], entropy: dict[str, Any] | None,
                      cpu_hours_budget: float) -> dict[str, Any]:
    """What the best stage-0 probe's curve says about the gate: the tokens its log-linear fit
    needs to reach the threshold, what they cost at the probe's own tokens per CPU-second, how
    many passes over the training corpus that is, and whether it fits the declared CPU-hours.
    A log-linear fit of a falling, flattening curve is optimistic (losses flatten faster), and
    passes beyond a few over a small corpus learn less per token, so 'beyond' is firm and
    'within' is a hope that the study's own stage-0 gate then checks."""
    tokens = probe.get("projected_tokens_to_pass")
    speed = probe["tokens"] / probe["cpu_s"] if probe.get("cpu_s") else None
    corpus_tokens = (entropy or {}).get("tokens")
    hours = None if tokens is None or not speed else tokens / speed / 3600
    passed = bool(probe.get("passes"))
    return {
        "probe": name, "final_heldout_mlm": probe.get("final_heldout_mlm"),
        "threshold": probe.get("threshold"), "probe_tokens": probe["tokens"],
        "projected_tokens": tokens, "tokens_per_cpu_s": None if speed is None else round(speed, 1),
        "projected_cpu_hours": None if hours is None else round(hours, 2),
        "corpus_tokens": corpus_tokens,
        "projected_epochs": None if tokens is None or not corpus_tokens else round(tokens / corpus_tokens, 1),
        "cpu_hours_budget": cpu_hours_budget,
        "within_budget": True if passed else (None if hours is None and tokens is None
                                              else hours is not None and hours <= cpu_hours_budget),
    }


def most_hopeful_projection(study: StudySpec, stage0: dict[str, Any],
                            entropy: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The projection of the stage-0 probe that needs the fewest CPU-hours to pass the gate (not
    the one with the lowest loss: a shorter probe at another rate may fall faster), so that
    'beyond the budget' holds for every probe tried."""
    if entropy is None:
        from benchmark.studies import gates

        try:
            entropy = gates.stage0_entropy(study, heldout=True)
        except Exception:  # noqa: BLE001 - no tokenizer or data here: the corpus size stays unknown
            entropy = None
    found = [stage0_projection(name, probe, entropy, study.calibrate.stage0_cpu_hours)
             for name, probe in stage0.items()]
    if not found:
        return None
    return min(found, key=lambda p: (p["within_budget"] is not True,
                                     p["projected_cpu_hours"] if p["projected_cpu_hours"] is not None
                                     else float("inf")))


def best_stage0(stage0: dict[str, Any], untagged_of: str | None = None) -> str | None:
    """The stage-0 probe with the lowest final held-out MLM loss (of the first round's, untagged
    probes only, with `untagged_of`: the one the first round's arm probes continued)."""
    names = [k for k in stage0 if untagged_of is None
             or k.removeprefix(f"{untagged_of}-cal-stage0-").startswith("lr")]
    finals = {k: stage0[k]["final_heldout_mlm"] for k in names}
    return min(names, key=lambda k: finals[k] if finals[k] is not None else float("inf"), default=None)


def calibration_summary(study: StudySpec) -> dict[str, Any] | None:
    """The stored calibration as the report and the page show it (None when none has run)."""
    record = read_record(study)
    if not record.get("stage0") and not record.get("arms"):
        return None
    stage0 = [{"probe": name, "lr": e.get("lr"), "batch_size": (e.get("overrides") or {}).get("batch_size"),
               "scheduler": (e.get("overrides") or {}).get("scheduler"), "tokens": e.get("tokens"),
               "steps": e.get("steps"), "final_heldout_mlm": e.get("final_heldout_mlm"),
               "threshold": e.get("threshold"), "unigram_entropy": e.get("unigram_entropy")}
              for name, e in sorted((record.get("stage0") or {}).items())]
    first_round = best_stage0(record.get("stage0") or {}, untagged_of=study.id)
    arms = [{"probe": name, "from": e.get("from", first_round),
             "objective": e.get("objective"), "lr": e.get("lr"), "term": e.get("term"),
             "tokens": e.get("tokens"), "start": e.get("start"), "end": e.get("end"),
             "fall": e.get("fall"), "passes": e.get("passes")}
            for name, e in sorted((record.get("arms") or {}).items())]
    keep = ("lr", "final_loss", "chance", "bm25_share", "steps")
    finetune = [{"probe": name, **{k: e.get(k) for k in keep}}
                for name, e in sorted((record.get("finetune") or {}).items())]
    projection = record.get("stage0_projection")
    if record.get("stage0") and study.stage0 is not None:
        projection = most_hopeful_projection(study, record["stage0"])
    return {"stage0": stage0, "projection": projection, "arms": arms,
            "finetune": finetune, "arm_threshold": study.gates.arm_drop}


def calibration_lines(summary: dict[str, Any]) -> list[str]:
    """The calibration in sentences (CLI and page): each probe with its measure and the gate's
    threshold, then the projection the design's budget rests on."""
    lines = []
    for e in summary.get("stage0") or []:
        if e["final_heldout_mlm"] is None:
            continue
        shape = (f"batch {e['batch_size']}, {e['scheduler']}" if e.get("batch_size")
                 else "the spec's stage-0 recipe")
        lines.append(f"stage 0 probe lr {e['lr']:g} ({shape}): held-out MLM {e['final_heldout_mlm']:.3f} "
                     f"after {e['tokens']:,} tokens in {e['steps']:,} steps (gate: <= {e['threshold']:.3f}, "
                     f"unigram entropy {e['unigram_entropy']:.3f})")
    for e in summary.get("arms") or []:
        if e["fall"] is None:
            continue
        judged = "" if e["passes"] is None else (" passes" if e["passes"] else " fails")
        lines.append(f"arm probe {e['objective']} lr {e['lr']:g} from {e['from']}: {e['term']} "
                     f"{e['start']:.3f} -> {e['end']:.3f} (fell {e['fall']:+.3f} over {e['tokens']:,} "
                     "tokens; "                     f"gate: >= {summary['arm_threshold']}){judged}")
    for e in summary.get("finetune") or []:
        if e.get("final_loss") is not None:
            lines.append(f"fine-tuning probe lr {e['lr']:g}: final loss {e['final_loss']:.3f} against chance "
                         f"{e['chance']:.3f}, {e['bm25_share']:.0%} of BM25 on validation train queries"
                         if e.get("bm25_share") is not None and e.get("chance") else
                         f"fine-tuning probe lr {e['lr']:g}: final loss {e['final_loss']:.3f}")
    p = summary.get("projection")
    if p and p.get("projected_tokens") is not None:
        lines.append(
            f"projection from {p['probe']}: the stage-0 gate needs about {p['projected_tokens']:,.0f} tokens "
            f"({p['projected_epochs']} passes over its {p['corpus_tokens']:,} training tokens), "
            f"{p['projected_cpu_hours']} CPU-hours at the probe's {p['tokens_per_cpu_s']:,} tokens per "
            f"CPU-second, against the {p['cpu_hours_budget']:g} declared: "
            + ("within" if p["within_budget"] else "beyond"))
    return lines

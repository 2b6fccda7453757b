"""A submission as a reviewer reads it on a pull request: the check's summary (what was verified,
every warning, the drift against stored numbers, the submitted model against the leaderboard's
models on each task) and the one-line reason of a rejected bundle. Deterministic: the same
bundle and results give the same text.
"""

from __future__ import annotations

import math
from pathlib import Path

from benchmark.results.schema import Result
from benchmark.submission.submit import Submission


def aggregate_diff(old: Result, new: Result) -> list[tuple[str, float, float, float]]:
    """(metric, old, new, new - old) for every metric of the new result."""
    return [
        (m, old.metrics.get(m, math.nan), v, v - old.metrics.get(m, math.nan))
        for m, v in sorted(new.metrics.items())
    ]


def leaderboard_rows(
    sub: Submission, results_dir: Path, metric: str = "nDCG@10"
) -> list[tuple[str, int, str, float, float, float | None]]:
    """(task, rank, model, score, delta vs the new model, paired p-value) on each submitted task.

    The new results take the place of any stored result of the same model; other models count
    only when evaluated on the same data (fingerprints) and queries."""
    from benchmark.results.result_store import iter_results

    try:
        from benchmark.evaluation.significance import paired_test
    except ImportError:  # the statistics module is optional here
        paired_test = None

    from benchmark.comparison.compare import competition_ranks
    from benchmark.results.identity import EvalKey

    stored = [r for _, r in iter_results(results_dir)]
    rows = []
    for item in sub.results:
        new = item.result
        key = EvalKey.of(new)
        peers = [
            r for r in stored
            if r.task.name == new.task.name and r.model.name != new.model.name
            and metric in r.per_query and EvalKey.of(r).comparable(key)
        ]
        ranked = sorted([new, *peers], key=lambda r: (-r.metrics[metric], r.model.name))
        # tied scores share the best rank, as in `maebench compare` and on the site
        ranks = competition_ranks([r.metrics[metric] for r in ranked])
        for r, rank in zip(ranked, ranks, strict=True):
            p_value = None
            if paired_test is not None and r is not new:
                qids = sorted(new.per_query[metric])
                p_value = paired_test(
                    [new.per_query[metric][q] for q in qids],
                    [r.per_query[metric][q] for q in qids],
                ).p_value
            delta = new.metrics[metric] - r.metrics[metric]
            rows.append((new.task.name, rank, r.model.name, r.metrics[metric], delta, p_value))
    return rows


def summary_markdown(sub: Submission, results_dir: Path, checked_only: bool = True,
                     metric: str = "nDCG@10") -> str:
    """The check as a reviewer reads it on a pull request (a CI job summary / artefact): what was
    verified, every warning, the drift of a re-submitted model against its stored numbers, and a
    table of the submitted model against the models already on the leaderboard for each task
    (tied scores share a rank). Deterministic: the same bundle and results give the same text."""
    def cell(text: object) -> str:
        return str(text).replace("|", "\\|").replace("\n", " ")

    card = sub.card.retriever
    state = ("replaces the card of that name" if sub.card_replaces else
             "new" if sub.card_is_new else "identical to the stored card")
    lines = [f"## maebench submit{' --check' if checked_only else ''}: {cell(sub.model)}: valid", ""]
    revision = getattr(card, "revision", None)
    checkpoint = getattr(card, "checkpoint", None)
    lines.append(f"Card `models/{sub.model}.yaml` ({state}); kind {card.kind}"
                 + (f", checkpoint `{checkpoint}` at `{revision}`" if checkpoint else "") + ".")
    lines.append("Every claimed number was recomputed from the bundle's run files against this "
                 "repository's qrels; dataset fingerprints, split, quirks and queries match the "
                 "catalog.")
    lines += ["", "| task | " + metric + " ×100 | checked |", "|---|---|---|"]
    for item in sub.results:
        notes = ["recomputed"]
        if item.bounds_only:
            notes.append(f"{', '.join(item.bounds_only)} bounds only (top-{item.result.run.depth} run)")
        if item.already_stored:
            notes.append("identical to the stored result")
        value = item.result.metrics.get(metric)
        lines.append(f"| {cell(item.result.task.name)} | "
                     f"{'' if value is None else f'{value * 100:.2f}'} | {cell('; '.join(notes))} |")
    lines += ["", "### Warnings", ""]
    lines += [f"- WARNING {cell(w)}" for w in sub.warnings] or ["- none"]
    drift = [(item.result.task.name, m, old, new, delta) for item in sub.results
             if item.previous is not None for m, old, new, delta in aggregate_diff(item.previous,
                                                                                   item.result)]
    lines += ["", "### Drift against the stored results", ""]
    if drift:
        lines += ["| task | metric | stored | submitted | Δ |", "|---|---|---|---|---|"]
        lines += [f"| {cell(t)} | {cell(m)} | {old:.4f} | {new:.4f} | {delta:+.4f} |"
                  for t, m, old, new, delta in drift]
    else:
        lines.append("- none: no task of this model is stored yet, or the stored results are "
                     "identical")
    lines += ["", f"### Against the models on the leaderboard ({metric} ×100; Δ = submitted minus "
              "the row; p = paired randomization test, uncorrected; tied scores share a rank)", "",
              "| task | # | model | " + metric + " | Δ | p |", "|---|---|---|---|---|---|"]
    for task, rank, model, score, delta, p_value in leaderboard_rows(sub, results_dir, metric):
        name = f"**{cell(model)}** (submitted)" if model == sub.model else cell(model)
        lines.append(f"| {cell(task)} | {rank} | {name} | {score * 100:.2f} | "
                     f"{'' if model == sub.model else f'{delta * 100:+.2f}'} | "
                     f"{'' if p_value is None else f'{p_value:.4f}'} |")
    return "\n".join(lines) + "\n"


def failure_markdown(bundle: Path, reason: str) -> str:
    """The job summary of a rejected bundle: the one-line reason, nothing else to read."""
    text = reason.replace("\n", " ")
    return (f"## maebench submit --check: {bundle.name}: rejected\n\n"
            f"```\n{text}\n```\n\nFix the bundle (`maebench bundle` writes a valid one) and push "
            "again.\n")

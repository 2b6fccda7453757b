"""Comparisons of stored results: which ones may be compared, paired tests per task, and the
across-task summary (mean over covered tasks, coverage, rank intervals).

Shared by `maebench compare` and the leaderboard builder, so both show the same numbers.
Two results are compared only when they were evaluated on the same data in the same way
(task, split, quirks, dataset fingerprints, query set); anything else is refused, never mixed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from benchmark.catalog.tasks import MAIN_METRIC
from benchmark.evaluation.significance import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_PERMUTATIONS,
    DEFAULT_SEED,
    IncomparableResultsError,
    PairComparison,
    TaskScores,
    correct,
    permutations_for,
    rank_intervals,
)
from benchmark.results.schema import Result
from benchmark.results.store import iter_results

# task -> model -> result
ResultTable = dict[str, dict[str, Result]]


@dataclass(frozen=True)
class StatsOptions:
    metric: str = MAIN_METRIC
    n_perm: int = DEFAULT_PERMUTATIONS
    n_boot: int = DEFAULT_BOOTSTRAP
    seed: int = DEFAULT_SEED
    alpha: float = 0.05


# --------------------------------------------------------------------------- loading


def load_table(results_dir: Path) -> ResultTable:
    table: ResultTable = {}
    for _, result in iter_results(results_dir):
        table.setdefault(result.task.name, {})[result.model.name] = result
    return {task: dict(sorted(models.items())) for task, models in sorted(table.items())}


def task_kind(name: str) -> str:
    """'benchmark', 'embedded' (smoke test) or 'subtask' (part of an aggregate, e.g. a
    CQADupStack forum): only benchmark tasks enter cross-task means by default."""
    from benchmark.catalog.tasks import get_task
    from benchmark.core.errors import MaebenchError

    try:
        spec = get_task(name)
    except MaebenchError:
        return "benchmark"
    if spec.part_of is not None:
        return "subtask"
    return "embedded" if "embedded" in spec.quirks else "benchmark"


def default_tasks(names: Iterable[str]) -> list[str]:
    """Benchmark tasks among `names`; the embedded smoke test only when nothing else is there."""
    names = sorted(set(names))
    kinds = {n: task_kind(n) for n in names}
    bench = [n for n in names if kinds[n] == "benchmark"]
    return bench or [n for n in names if kinds[n] == "embedded"]


# --------------------------------------------------------------------------- comparability


def incompatibility(a: Result, b: Result, metric: str = MAIN_METRIC) -> str | None:
    """Why `a` and `b` cannot be compared on `metric` (None when they can): the data parts of
    their EvalKeys (benchmark.results.identity, shared with submit, reproduce, the runner) must agree."""
    from benchmark.results.identity import EvalKey

    for result in (a, b):
        if metric not in result.per_query:
            return f"{result.model.name} on {result.task.name} has no per-query {metric}"
    differs = EvalKey.of(a).differences(EvalKey.of(b), with_config=False)
    return f"their {differs[0]} differ" if differs else None


def check_comparable(a: Result, b: Result, metric: str = MAIN_METRIC) -> None:
    reason = incompatibility(a, b, metric)
    if reason:
        raise IncomparableResultsError(
            f"cannot compare {a.model.name} and {b.model.name} on {a.task.name}: {reason}"
        )


def comparable_groups(results: Sequence[Result], metric: str = MAIN_METRIC) -> list[list[Result]]:
    """Partition one task's results into mutually comparable groups, largest first (ties by the
    first model name), so the leaderboard can test within the main group and flag the rest."""
    from benchmark.results.identity import EvalKey

    groups: dict[str, list[Result]] = {}
    for result in results:
        if metric not in result.per_query:
            continue
        groups.setdefault(EvalKey.of(result).data_id(), []).append(result)
    ordered = [sorted(g, key=lambda r: r.model.name) for g in groups.values()]
    return sorted(ordered, key=lambda g: (-len(g), g[0].model.name))


def task_scores(results: Sequence[Result], options: StatsOptions) -> TaskScores:
    """Aligned per-query scores (queries sorted by id) of mutually comparable results."""
    if not results:
        raise IncomparableResultsError("no results to compare")
    first = results[0]
    for other in results[1:]:
        check_comparable(first, other, options.metric)
    if options.metric not in first.per_query:
        raise IncomparableResultsError(
            f"{first.model.name} on {first.task.name} has no per-query {options.metric}"
        )
    qids = sorted(first.per_query[options.metric])
    matrix = np.array([[r.per_query[options.metric][q] for q in qids] for r in results])
    return TaskScores(
        first.task.name,
        options.metric,
        [r.model.name for r in results],
        matrix,
        n_perm=options.n_perm,
        n_boot=options.n_boot,
        seed=options.seed,
    )


def ordered_by_score(results: Iterable[Result], metric: str) -> list[Result]:
    return sorted(results, key=lambda r: (-r.metrics.get(metric, float("-inf")), r.model.name))


def competition_ranks(scores: Sequence[float]) -> list[int]:
    """Standard competition ranking ("1224"): one plus the number of strictly better scores, so
    tied scores share the best rank and the next one skips. The one rule for every rank maebench
    prints (task pages, the leaderboard, `compare`, `submit`, benchmark standings): two copies of
    the same model used to read as #3 and #4 on a task page while `compare` called both #3."""
    return [1 + sum(other > score for other in scores) for score in scores]


def all_pairs(names: Sequence[str]) -> list[tuple[str, str]]:
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]


# --------------------------------------------------------------------------- summaries


@dataclass
class ModelSummary:
    name: str
    display_name: str
    family: str
    scores: dict[str, float]  # task -> official aggregate score
    mean: float | None
    covered: int
    total: int
    rank: int | None = None
    rank_low: int | None = None
    rank_high: int | None = None

    @property
    def coverage(self) -> str:
        return f"{self.covered}/{self.total}"

    @property
    def complete(self) -> bool:
        return self.covered == self.total


def summarize(
    table: ResultTable,
    tasks: Sequence[str],
    models: Sequence[str] | None,
    scores_by_task: dict[str, TaskScores],
    options: StatsOptions,
) -> list[ModelSummary]:
    """Mean score over the tasks each model has (coverage shown), models with every task first.

    Only complete models are ranked; their rank interval comes from resampling the queries of
    every task (the mean over tasks recomputed per bootstrap replicate), so overlapping
    intervals mean the ranks are not separable at this sample size."""
    names = sorted(models) if models is not None else sorted({m for t in tasks for m in table[t]})
    out = []
    for name in names:
        scores = {t: table[t][name].metrics[options.metric] for t in tasks
                  if name in table[t] and options.metric in table[t][name].metrics}
        info = next(table[t][name].model for t in (*tasks, *table) if name in table[t])
        out.append(ModelSummary(
            name=name,
            display_name=info.display_name,
            family=info.family,
            scores=scores,
            mean=float(np.mean(list(scores.values()))) if scores else None,
            covered=len(scores),
            total=len(tasks),
        ))
    out.sort(key=lambda s: (not s.complete, -s.covered, -(s.mean or 0.0), s.name))
    complete = [s for s in out if s.complete]
    usable = all(t in scores_by_task and all(s.name in scores_by_task[t].index for s in complete)
                 for t in tasks)
    if complete and tasks and usable:
        boots = []
        for t in tasks:
            ts = scores_by_task[t]
            cols = [ts.index[s.name] for s in complete]
            boots.append(ts.bootstrap_means()[:, cols])
        low, high = rank_intervals(boots)
        ranks = competition_ranks([s.mean for s in complete])
        for i, s in enumerate(complete):
            # tied means share the best rank, as in the bootstrap replicates, and the interval
            # always holds the observed rank (a percentile interval need not)
            s.rank = ranks[i]
            s.rank_low, s.rank_high = min(int(low[i]), s.rank), max(int(high[i]), s.rank)
    return out


@dataclass
class ComparisonReport:
    metric: str
    tasks: list[str]
    models: list[str]
    comparisons: list[PairComparison]
    summary: list[ModelSummary]
    settings: dict = field(default_factory=dict)
    given_order: list[str] | None = None  # --models as typed: tables keep this order
    baseline: str | None = None  # one-vs-all: every comparison is (model, baseline)

    def as_dict(self) -> dict:
        return {
            "metric": self.metric,
            "tasks": self.tasks,
            "models": self.models,
            "settings": self.settings,
            "correction_family": "all comparisons listed here (Holm and Benjamini-Hochberg): "
                                 + holm_family(self)[1],
            "baseline": self.baseline,
            "comparisons": [_rounded({**c.as_dict(), "holm_family": holm_family(self)[0]})
                            for c in self.comparisons],
            "summary": [
                _rounded({**asdict(s), "coverage": s.coverage}) for s in self.summary
            ],
        }


def _rounded(record: dict) -> dict:
    """Floats to 6 decimals for the written outputs (the statistics are exact; this keeps the
    files readable and stable)."""
    out = {}
    for key, value in record.items():
        if isinstance(value, float):
            out[key] = round(value, 6)
        elif isinstance(value, dict):
            out[key] = _rounded(value)
        else:
            out[key] = value
    return out


def build_report(
    table: ResultTable,
    tasks: Sequence[str] | None,
    models: Sequence[str] | None,
    options: StatsOptions,
    baseline: str | None = None,
) -> ComparisonReport:
    """All pairwise comparisons of `models` (default: every model) on `tasks` (default: the
    tasks all given models share), corrected together as one family. Given models keep their
    order (A before B as typed); otherwise models are ordered by score. With `baseline`, only
    the comparisons of every other model with it (one-vs-all, a smaller family)."""
    from benchmark.core.errors import MaebenchError

    if baseline is not None and models is not None and baseline not in models:
        models = [*models, baseline]
    if baseline is not None and not any(baseline in table[t] for t in table):
        raise MaebenchError(f"no results for baseline '{baseline}'")

    if models is not None:
        missing = [m for m in models if not any(m in table[t] for t in table)]
        if missing:
            raise MaebenchError(f"no results for model(s): {', '.join(missing)}")
        if len(set(models)) < 2 and not tasks:
            raise MaebenchError("give at least two models to compare")
    if tasks is None:
        if models is None:
            raise MaebenchError("give --task or --models")
        shared = [t for t in table if all(m in table[t] for m in models)]
        tasks = default_tasks(shared)
        if not tasks:
            raise MaebenchError(f"models {', '.join(models)} share no task")
    for t in tasks:
        if t not in table:
            raise MaebenchError(f"no results for task '{t}' (have: {', '.join(table) or 'none'})")

    comparisons: list[PairComparison] = []
    scores_by_task: dict[str, TaskScores] = {}
    if models is not None:
        position = {m: i for i, m in enumerate(dict.fromkeys(models))}
        selected = {t: sorted((r for name, r in table[t].items() if name in position),
                              key=lambda r: position[r.model.name]) for t in tasks}
    else:
        selected = {t: ordered_by_score(table[t].values(), options.metric) for t in tasks}

    def pairs(names: list[str]) -> list[tuple[str, str]]:
        if baseline is None:
            return all_pairs(names)
        return [(n, baseline) for n in names if n != baseline] if baseline in names else []

    family = sum(len(pairs([r.model.name for r in c])) for c in selected.values())
    options = replace(options, n_perm=permutations_for(family, options.alpha, options.n_perm))
    for t in tasks:
        chosen = selected[t]
        if len(chosen) < 2:
            continue
        ts = task_scores(chosen, options)
        scores_by_task[t] = ts
        comparisons.extend(ts.compare(pairs([r.model.name for r in chosen])))
    if not comparisons:
        raise MaebenchError("fewer than two models on every task given: nothing to compare")
    comparisons = correct(comparisons)
    summary = summarize(table, tasks, models, scores_by_task, options)
    return ComparisonReport(
        metric=options.metric,
        tasks=list(tasks),
        models=[s.name for s in summary],
        comparisons=comparisons,
        summary=summary,
        given_order=list(dict.fromkeys(models)) if models is not None else None,
        baseline=baseline,
        settings={
            "test": "paired randomization (sign flip), two-sided, p=(count+1)/(n_perm+1)",
            "n_perm": options.n_perm,  # raised with the family size, see permutations_for
            "bootstrap": "paired percentile bootstrap of the mean difference, 95%",
            "n_boot": options.n_boot,
            "seed": options.seed,
            "alpha": options.alpha,
        },
    )


# --------------------------------------------------------------------------- formats


def significance_mark(c: PairComparison, alpha: float) -> str:
    if c.p_holm is None or c.p_holm >= alpha:
        return ""
    return "A>B" if c.diff > 0 else "A<B"


def _fmt_p(p: float | None) -> str:
    if p is None:
        return "-"
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"


def _fmt_d(d: float | None) -> str:
    return "-" if d is None else f"{d:+.2f}"


COMPARISON_HEADERS = ("task", "A", "B", "mean A", "mean B", "A-B", "95% CI", "d", "W/T/L",
                      "p", "p Holm", "p BH", "sig.", "Holm family")
SUMMARY_HEADERS = ("model", "family", "mean", "coverage", "rank", "rank 95%")


def holm_family(report: ComparisonReport) -> tuple[str, str]:
    """(short, full) statement of the family Holm and BH corrected over: every comparison of
    this report. Printed on every line, because the family decides the adjusted p: `compare
    --models a,b` (one pair per shared task) and `compare --task t` (every pair of t's models)
    give the same pair different Holm p-values, and a reader comparing two outputs must see why.
    """
    m = len(report.comparisons)
    tasks = sorted({c.task for c in report.comparisons})
    names = sorted({n for c in report.comparisons for n in (c.a, c.b)})
    where = tasks[0] if len(tasks) == 1 else f"{len(tasks)} tasks"
    on = f"on {tasks[0]}" if len(tasks) == 1 else f"on each of {', '.join(tasks)}"
    count = f"the {m} comparison{'s' if m != 1 else ''}"
    if report.baseline is not None:
        what = f"vs {report.baseline}"
        full = f"{count}: each model with {report.baseline}, {on}"
    else:
        what = "all pairs"
        given = " given" if report.given_order else ""
        full = f"{count}: every pair of the {len(names)} models{given}, {on}"
    return f"{m}: {what}, {where}", full


def comparison_rows(report: ComparisonReport, alpha: float) -> list[list[str]]:
    family = holm_family(report)[0]
    return [
        [c.task, c.a, c.b, f"{c.mean_a:.4f}", f"{c.mean_b:.4f}", f"{c.diff:+.4f}",
         f"[{c.ci_low:+.4f}, {c.ci_high:+.4f}]", _fmt_d(c.cohens_d),
         f"{c.wins}/{c.ties}/{c.losses}", _fmt_p(c.p_value), _fmt_p(c.p_holm), _fmt_p(c.p_bh),
         significance_mark(c, alpha), family]
        for c in report.comparisons
    ]


def summary_rows(report: ComparisonReport) -> list[list[str]]:
    rows = []
    for s in report.summary:
        interval = f"{s.rank_low}-{s.rank_high}" if s.rank_low is not None else "-"
        rows.append([s.name, s.family, "-" if s.mean is None else f"{s.mean:.4f}", s.coverage,
                     str(s.rank) if s.rank else "-", interval])
    return rows


def _notes(report: ComparisonReport) -> list[str]:
    a = report.settings
    return [
        f"Metric {report.metric}; paired randomization test, {a['n_perm']} sign flips, "
        f"two-sided; 95% paired bootstrap CI ({a['n_boot']} resamples); seed {a['seed']}.",
        f"Holm and Benjamini-Hochberg corrections over one family, {holm_family(report)[1]} "
        "(every line says its family: another selection of models or tasks is another family, "
        "so the same pair can get another adjusted p); "
        f"sig. = Holm-adjusted p < {a['alpha']}; d = paired Cohen's d.",
        "Mean = mean over the tasks a model has; only models with every task are ranked; "
        "rank 95% = bootstrap interval over queries.",
    ]


def to_json(report: ComparisonReport) -> str:
    return json.dumps(report.as_dict(), indent=1, sort_keys=True) + "\n"


def _md_table(headers: Sequence[str], rows: list[list[str]]) -> str:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def to_markdown(report: ComparisonReport) -> str:
    alpha = report.settings["alpha"]
    parts = [
        f"## Pairwise comparisons ({report.metric})",
        _md_table(COMPARISON_HEADERS, comparison_rows(report, alpha)),
        f"## Across tasks ({', '.join(report.tasks)})",
        _md_table(SUMMARY_HEADERS, summary_rows(report)),
        "\n".join(f"- {n}" for n in _notes(report)),
    ]
    return "\n\n".join(parts) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                  "^": r"\textasciicircum{}"}


def _tex(cell: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in cell)


def _tex_table(headers: Sequence[str], rows: list[list[str]], caption: str) -> str:
    lines = [
        r"\begin{table}[t]", r"\centering", r"\small",
        r"\begin{tabular}{" + "l" * 3 + "r" * (len(headers) - 3) + "}" if len(headers) > 3
        else r"\begin{tabular}{" + "l" * len(headers) + "}",
        r"\toprule",
        " & ".join(_tex(h) for h in headers) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(_tex(c) for c in row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\caption{" + _tex(caption) + "}",
              r"\end{table}"]
    return "\n".join(lines)


def to_latex(report: ComparisonReport) -> str:
    """Two booktabs tables (needs \\usepackage{booktabs})."""
    alpha = report.settings["alpha"]
    notes = " ".join(_notes(report))
    return "\n\n".join([
        _tex_table(COMPARISON_HEADERS, comparison_rows(report, alpha),
                   f"Pairwise comparisons. {notes}"),
        _tex_table(SUMMARY_HEADERS, summary_rows(report),
                   f"{report.metric} across tasks ({', '.join(report.tasks)})."),
    ]) + "\n"


FORMATS = {"json": to_json, "markdown": to_markdown, "latex": to_latex}
SUFFIXES = {".json": "json", ".md": "markdown", ".markdown": "markdown", ".tex": "latex"}


def ordered_summary(report: ComparisonReport) -> list[ModelSummary]:
    """Summary rows in the order the models were given (else best first)."""
    if not report.given_order:
        return report.summary
    position = {m: i for i, m in enumerate(report.given_order)}
    return sorted(report.summary, key=lambda s: position.get(s.name, len(position)))


def render_rich(report: ComparisonReport, console, wide: bool = False) -> None:
    """Compact tables that fit 100 columns (scores x100, 1-decimal CI, Holm p only); `wide`
    adds every column (raw means, d, W/T/L, p, p BH) for a wide terminal or a file."""
    if wide:
        _render_wide(report, console)
    else:
        _render_compact(report, console)
    for note in _notes(report):
        console.print(f"[dim]{note}[/]")


def _table(title: str):
    from rich import box
    from rich.table import Table

    return Table(title=title, header_style="bold", box=box.SIMPLE_HEAD, pad_edge=False,
                 title_justify="left")


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def abbreviations(names: Sequence[str], width: int) -> dict[str, str] | None:
    """Each name cut to at most `width` characters with an ellipsis in the middle, so that two
    distinct names never print the same (the seeds `...-cpu-s0` / `...-cpu-s1` keep their ends);
    None when no cut at this width keeps them apart (the caller then gives the column more room).
    """
    names = list(dict.fromkeys(names))
    if all(len(n) <= width for n in names):
        return {n: n for n in names}
    if width < 3:
        return None
    room = width - 1  # one character for the ellipsis
    # from a balanced cut towards keeping more of the end (names differ by suffix more often)
    for tail in [*range((room + 1) // 2, room + 1), *range((room + 1) // 2 - 1, -1, -1)]:
        head = room - tail
        cut = {n: n if len(n) <= width else n[:head] + "…" + (n[len(n) - tail:] if tail else "")
               for n in names}
        if len(set(cut.values())) == len(names):
            return cut
    return None


def _name_column(table, header: str, width: int, fitted: bool = False) -> None:
    """A name column of at most `width`; `fitted`: its cells were cut to it already."""
    table.add_column(header, max_width=width, min_width=width if fitted else None,
                     overflow="ellipsis", no_wrap=True)


def _num_column(table, header: str, values: Sequence[str] = ()) -> None:
    """A number column rich may never squeeze (it would cut 0.6863 to '0.…'): its minimum
    width is its widest cell, so the name columns give way instead."""
    width = max([len(header), *(len(v) for v in values)])
    table.add_column(header, justify="right", no_wrap=True, min_width=width)


def _render_compact(report: ComparisonReport, console) -> None:
    alpha = report.settings["alpha"]
    family = str(len(report.comparisons))  # the family's size; its notes line names it
    title = f"{report.metric} ×100, " + (
        f"each model vs {report.baseline}" if report.baseline else "pairwise")
    rows = [
        [c.task, c.a, f"{c.mean_a * 100:.2f}", c.b, f"{c.mean_b * 100:.2f}",
         f"{c.diff * 100:+.2f}", f"[{c.ci_low * 100:+.1f},{c.ci_high * 100:+.1f}]",
         _fmt_p(c.p_holm) + {"A>B": " >", "A<B": " <"}.get(significance_mark(c, alpha), "  "),
         family]
        for c in report.comparisons
    ]
    columns = list(zip(*rows, strict=True)) if rows else [()] * 9

    def build(task_w: int, name_w: int):
        table = _table(title)
        _name_column(table, "task", task_w, fitted=True)
        _name_column(table, "A", name_w, fitted=True)
        _num_column(table, "A", columns[2])
        _name_column(table, "B", name_w, fitted=True)
        _num_column(table, "B", columns[4])
        _num_column(table, "A−B", columns[5])
        _num_column(table, "95% CI", columns[6])
        _num_column(table, "p Holm", columns[7])
        _num_column(table, "of", columns[8])  # "p Holm ... of N tests": narrow, names keep their width
        short = abbreviations([*columns[1], *columns[3]], name_w) or {}
        tasks = abbreviations(columns[0], task_w) or {}
        for row in rows:
            style = "green" if row[7].endswith(">") else "red" if row[7].endswith("<") else None
            table.add_row(tasks.get(row[0], row[0]), short.get(row[1], row[1]), row[2],
                          short.get(row[3], row[3]), *row[4:], style=style)
        return table

    # the numbers keep their full width; task and model names shrink until the table fits
    # (measured by rendering it unconstrained: rich would otherwise squeeze the numbers)
    import io

    from rich.console import Console

    def natural_width(table) -> int:
        scratch = Console(file=io.StringIO(), width=1000, color_system=None)
        scratch.print(table)
        return max(len(line.rstrip()) for line in scratch.file.getvalue().splitlines())

    # names are cut in the middle and never to the same text (abbreviations); a width at which
    # two names would collide is skipped, so the floor is where names stay distinct
    names = [*columns[1], *columns[3]]
    task_w = min(12, max([4, *(len(v) for v in columns[0])]))
    name_w = min(22, max([4, *(len(v) for v in names)]))
    while abbreviations(names, name_w) is None:
        name_w += 1
    while abbreviations(columns[0], task_w) is None:
        task_w += 1
    floor_name, floor_task = min(8, name_w), min(6, task_w)
    table = build(task_w, name_w)
    while natural_width(table) > console.width and (name_w > floor_name or task_w > floor_task):
        if name_w > floor_name and abbreviations(names, name_w - 1) is not None:
            name_w -= 1
        elif task_w > floor_task and abbreviations(columns[0], task_w - 1) is not None:
            task_w -= 1
        else:
            break
        table = build(task_w, name_w)
    console.print(table)
    entries = ordered_summary(report)
    full = [s.name for s in entries]
    numbers = [["-" if s.mean is None else f"{s.mean * 100:.2f}", s.coverage,
                str(s.rank) if s.rank else "-",
                f"{s.rank_low}-{s.rank_high}" if s.rank_low is not None else "-"]
               for s in entries]

    def build_summary(model_w: int):
        summary = _table(f"Across tasks: {', '.join(report.tasks)}")
        short = abbreviations(full, model_w) or {}
        _name_column(summary, "model", model_w, fitted=True)
        _name_column(summary, "family", 12)
        columns = list(zip(*numbers, strict=True)) if numbers else [()] * 4
        for i, h in enumerate(("mean", "coverage", "rank", "rank 95%")):
            _num_column(summary, h, columns[i])
        for s, row in zip(entries, numbers, strict=True):
            summary.add_row(short.get(s.name, s.name), s.family, *row)
        return summary, short

    model_w = max([5, *(len(n) for n in full)])  # full names where they fit
    summary, short = build_summary(model_w)
    while natural_width(summary) > console.width and model_w > 12 and \
            abbreviations(full, model_w - 1) is not None:
        model_w -= 1
        summary, short = build_summary(model_w)
    console.print(summary)
    cut = name_w < max([0, *(len(n) for n in names)]) or any(
        short.get(n, n) != n for n in full)
    if cut:
        console.print("[dim]Names cut in the middle (…) to fit, never to the same text; "
                      "--wide or --format markdown print them in full.[/]")
    console.print(f"[dim]> / <: A significantly better / worse than B (Holm, α = {alpha}); "
                  "of: how many tests the family each p Holm was corrected in holds; "
                  "--wide for d, W/T/L, raw p and BH.[/]")


def _render_wide(report: ComparisonReport, console) -> None:
    from rich.table import Table

    alpha = report.settings["alpha"]
    table = Table(title=f"Pairwise comparisons ({report.metric})", header_style="bold")
    for h in COMPARISON_HEADERS:
        table.add_column(h, justify="left" if h in ("task", "A", "B", "sig.", "Holm family")
                         else "right", no_wrap=h not in ("task", "A", "B", "Holm family"))
    for row in comparison_rows(report, alpha):
        mark = row[12]
        style = "green" if mark == "A>B" else "red" if mark == "A<B" else None
        table.add_row(*row, style=style)
    console.print(table)
    summary = Table(title=f"Across tasks: {', '.join(report.tasks)}", header_style="bold")
    for h in SUMMARY_HEADERS:
        summary.add_column(h, justify="left" if h in ("model", "family") else "right")
    position = {s.name: i for i, s in enumerate(ordered_summary(report))}
    for row in sorted(summary_rows(report), key=lambda r: position[r[0]]):
        summary.add_row(*row)
    console.print(summary)

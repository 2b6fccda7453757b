"""The result of a comparison (ComparisonReport) and its text forms: JSON, Markdown, LaTeX.

`str(report)` and `report.to_markdown()` give the Markdown tables `maebench compare --format
markdown` writes; the files `--out` writes and the notes every form carries (the Holm family on
every line) are made here, so the CLI, the Python API and a written file say the same.
The report is computed by benchmark.comparison.compare.build_report; the terminal tables are
benchmark.comparison.console.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from benchmark.evaluation.significance import PairComparison


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

    def to_markdown(self) -> str:
        """The comparisons and the across-task summary as Markdown tables, with their notes."""
        return to_markdown(self)

    def __str__(self) -> str:
        return to_markdown(self)


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


def significance_mark(c: PairComparison, alpha: float) -> str:
    if c.p_holm is None or c.p_holm >= alpha:
        return ""
    return "A>B" if c.diff > 0 else "A<B"


def format_p(p: float | None) -> str:
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
         f"{c.wins}/{c.ties}/{c.losses}", format_p(c.p_value), format_p(c.p_holm), format_p(c.p_bh),
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


def notes(report: ComparisonReport) -> list[str]:
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
        "\n".join(f"- {n}" for n in notes(report)),
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
    told = " ".join(notes(report))
    return "\n\n".join([
        _tex_table(COMPARISON_HEADERS, comparison_rows(report, alpha),
                   f"Pairwise comparisons. {told}"),
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



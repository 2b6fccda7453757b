"""`maebench compare` in a terminal: the report as rich tables that fit the console's width.

Compact by default (scores x100, Holm p only; names cut in the middle, never to the same text),
every column with `wide`. The numbers and notes are the report's (benchmark.comparison.report).
"""

from __future__ import annotations

from collections.abc import Sequence

from benchmark.comparison.report import (
    COMPARISON_HEADERS,
    SUMMARY_HEADERS,
    ComparisonReport,
    comparison_rows,
    format_p,
    notes,
    ordered_summary,
    significance_mark,
    summary_rows,
)


def render_rich(report: ComparisonReport, console, wide: bool = False) -> None:
    """Compact tables that fit 100 columns (scores x100, 1-decimal CI, Holm p only); `wide`
    adds every column (raw means, d, W/T/L, p, p BH) for a wide terminal or a file."""
    if wide:
        _render_wide(report, console)
    else:
        _render_compact(report, console)
    for note in notes(report):
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
         format_p(c.p_holm) + {"A>B": " >", "A<B": " <"}.get(significance_mark(c, alpha), "  "),
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

"""Numbers reported in papers (results/reported/) as the Reported page's tables.

They come only from results/reported/ and are shown in their own, labelled tables, never mixed
into a measured one; one table sets each next to the number maebench measured, when there is
one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmark.comparison.compare import ResultTable, task_kind
from benchmark.evaluation.metrics import STANDARD_METRICS


def reported_numbers(results_dir: Path) -> list[Any]:
    """Reported numbers (benchmark.results.reported); [] when that module or folder is absent."""
    try:
        from benchmark.results.reported import load_reported
    except ImportError:
        return []
    return sorted(
        load_reported(results_dir),
        key=lambda r: (r.cell.model, r.cell.task, r.cell.metric, r.file, r.cell.system),
    )


def reported_tables(reported: list[Any], table: ResultTable, metric: str) -> dict:
    """Everything the Reported page shows beside the list itself: the model x task matrix of
    `metric`, its means, the in-domain table, reported next to measured, the models reported
    without `metric`, and the numbers grouped by source file."""
    matrix = _reported_matrix(reported, metric)
    return {
        "matrix": matrix,
        "aggregates": _reported_aggregates(matrix),
        "in_domain": _in_domain_reported(reported),
        "versus": _reported_vs_measured(reported, table),
        "without_metric": sorted({r.cell.model for r in reported} - {m for m, _ in matrix["rows"]}),
        "by_source": _by_source(reported),
    }


def _reported_matrix(reported: list[Any], metric: str) -> dict:
    """Reported `metric` as model rows x task columns; a cell lists every source's number. The
    in-domain MS MARCO / TREC DL numbers have their own table (_in_domain_reported)."""
    cells: dict[str, dict[str, list[Any]]] = {}
    for r in reported:
        # CQADupStack's forums are parts of its mean (listed by source, not as 12 columns)
        if r.cell.metric == metric and r.cell.task not in IN_DOMAIN and \
                task_kind(r.cell.task) != "subtask":
            cells.setdefault(r.cell.model, {}).setdefault(r.cell.task, []).append(r)
    tasks = sorted({t for row in cells.values() for t in row})
    return {"tasks": tasks, "rows": sorted(cells.items())}


def _reported_aggregates(matrix: dict) -> dict:
    """Per model of the reported matrix: the mean over the tasks it has (with their count) and,
    for each declared benchmark whose every task it reports, the benchmark's mean (the only
    means two models can be compared on). Cells with several sources use the first shown."""
    from benchmark.catalog.benchmarks import load_benchmarks

    benches = [b for b in load_benchmarks()
               if all(e.metric is None for e in b.entries())]  # one metric throughout
    rows: dict[str, dict] = {}
    for model, cells in matrix["rows"]:
        values = {t: c[0].cell.value for t, c in cells.items()}
        means = {}
        for bench in benches:
            tasks = [e.task for e in bench.entries()]
            if all(t in values for t in tasks):
                means[bench.id] = sum(values[t] for t in tasks) / len(tasks)
        rows[model] = {"mean": sum(values.values()) / len(values) if values else None,
                       "n": len(values), "benchmarks": means}
    shown = [b for b in benches if any(b.id in r["benchmarks"] for r in rows.values())]
    return {"rows": rows, "benchmarks": shown}


def _reported_vs_measured(reported: list[Any], table: ResultTable) -> list[dict]:
    """Every reported number next to the number maebench measured for the same model, task and
    metric (when there is one): the side-by-side the Reported page shows."""
    rows: dict[tuple, dict] = {}
    for r in reported:
        result = table.get(r.cell.task, {}).get(r.cell.model)
        if result is None or r.cell.metric not in result.metrics:
            continue
        measured = result.metrics[r.cell.metric]
        key = (r.cell.model, r.cell.task, r.cell.metric, r.cell.value)
        if key in rows:  # the same number from a second source: one row naming both
            rows[key]["sources"].append(r)
            continue
        rows[key] = {"reported": r, "sources": [r], "measured": measured,
                     "diff": measured - r.cell.value}
    order = {m: i for i, m in enumerate(STANDARD_METRICS)}
    return [rows[k] for k in sorted(rows, key=lambda k: (k[0], k[1], order.get(k[2], 99), k[2],
                                                          k[3]))]


IN_DOMAIN = ("msmarco", "trec-dl-2019", "trec-dl-2020")


def _in_domain_reported(reported: list[Any]) -> dict:
    """MS MARCO dev and TREC DL numbers (MRR@10, R@50, R@1000, nDCG@10) as model rows x
    (task, metric) columns: the MS MARCO retrievers report these, not BEIR's nDCG@10."""
    cells: dict[str, dict[tuple[str, str], list[Any]]] = {}
    for r in reported:
        if r.cell.task in IN_DOMAIN:
            cells.setdefault(r.cell.model, {}).setdefault((r.cell.task, r.cell.metric), []).append(r)
    order = {"MRR@10": 0, "nDCG@10": 1, "R@50": 2, "R@100": 3, "R@1000": 4}
    columns = sorted({k for row in cells.values() for k in row},
                     key=lambda k: (IN_DOMAIN.index(k[0]), order.get(k[1], 9), k[1]))
    return {"columns": columns, "rows": sorted(cells.items())}


def _by_source(reported: list[Any]) -> list[tuple[str, list[Any]]]:
    groups: dict[str, list[Any]] = {}
    for r in reported:
        groups.setdefault(r.file, []).append(r)
    return sorted(groups.items())

"""`maebench compare` on a terminal: compact tables within 100 columns, numbers never cut,
models in the order given, one-vs-baseline."""

from __future__ import annotations

import io

import numpy as np
from rich.console import Console

from benchmark.compare import StatsOptions, build_report, load_table, render_rich
from benchmark.results import write_result
from tests.test_compare import make_result

FAST = StatsOptions(n_perm=2000, n_boot=2000)
LONG = ("retromae-msmarco-distill-with-a-long-name", "cocondenser-marco-retriever-long-name",
        "contriever-msmarco-long-name", "bm25")


def _table(results_dir):
    rng = np.random.default_rng(0)
    for i, name in enumerate(LONG):
        for task in ("scifact", "nfcorpus"):
            scores = np.clip(rng.normal(0.3 + 0.1 * i, 0.2, 120), 0, 1)
            write_result(results_dir, make_result(name, task, scores), None)
    return load_table(results_dir)


def _render(report, wide=False) -> str:
    buffer = io.StringIO()
    render_rich(report, Console(file=buffer, width=200 if wide else 100), wide=wide)
    return buffer.getvalue()


def test_compact_fits_100_columns_and_keeps_every_number(results_dir):
    report = build_report(_table(results_dir), ["scifact"], None, FAST)
    text = _render(report)
    assert max(len(line) for line in text.splitlines()) <= 100
    for c in report.comparisons:
        assert f"{c.diff * 100:+.2f}" in text and f"{c.mean_a * 100:.2f}" in text
    assert "…" not in "".join(line for line in text.splitlines() if "+" in line and "[" in line
                              ).split("]")[-1]  # numbers are never ellipsised
    wide = _render(report, wide=True)
    assert "W/T/L" in wide and "p BH" in wide


def test_models_keep_the_given_order_and_baseline_mode(results_dir):
    table = _table(results_dir)
    given = ["bm25", "contriever-msmarco-long-name", "retromae-msmarco-distill-with-a-long-name"]
    report = build_report(table, None, given, FAST)
    assert [(c.a, c.b) for c in report.comparisons if c.task == "scifact"] == [
        (given[0], given[1]), (given[0], given[2]), (given[1], given[2])]
    text = _render(report)
    summary = text.split("Across tasks")[1]
    assert [summary.index(n[:20]) for n in given] == sorted(summary.index(n[:20]) for n in given)
    one = build_report(table, ["scifact"], None, FAST, baseline="bm25")
    assert {c.b for c in one.comparisons} == {"bm25"} and len(one.comparisons) == 3
    assert "vs bm25" in _render(one)

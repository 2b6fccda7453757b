"""`maebench compare` on a terminal: compact tables within 100 columns, numbers never cut,
models in the order given, one-vs-baseline."""

from __future__ import annotations

import io

import numpy as np
from rich.console import Console

from benchmark.comparison.compare import StatsOptions, build_report, load_table
from benchmark.comparison.console import render_rich
from benchmark.results.result_store import write_result
from tests.helpers.results import make_result

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


def test_long_names_that_differ_at_the_end_never_print_the_same(results_dir):
    """Two fine-tuned seeds share 40 characters: cut names must still tell them apart, in the
    pairwise rows and in the rank table (issue 20 item 2)."""
    from benchmark.comparison.console import abbreviations

    seeds = [f"all-minilm-l6-v2-ft-scifact-standard-cpu-with-a-longer-tail-s{i}" for i in (0, 1)]
    rng = np.random.default_rng(1)
    for i, name in enumerate([*seeds, "bm25", "contriever-msmarco-long-name"]):
        write_result(results_dir, make_result(name, "scifact", np.clip(
            rng.normal(0.3 + 0.05 * i, 0.2, 120), 0, 1)), None)
    report = build_report(load_table(results_dir), ["scifact"], None, FAST)
    text = _render(report)
    assert max(len(line) for line in text.splitlines()) <= 100
    rows = [line.split() for line in text.splitlines() if line.strip().startswith("scifact")]
    pairs = {(r[1], r[3]) for r in rows}
    assert len(pairs) == len(report.comparisons) == 6  # every pair prints distinctly
    ranked = text.split("Across tasks")[1].splitlines()
    shown = [line.split()[0] for line in ranked if line.strip() and line.split()[0][:3] in (
        "all", "bm2", "con")]
    assert len(shown) == len(set(shown)) == 4
    assert "cut in the middle" in text
    cut = abbreviations(seeds, 12)
    assert cut is not None and len(set(cut.values())) == 2 and all(len(v) <= 12 for v in cut.values())
    assert abbreviations(["ab", "abc"], 40) == {"ab": "ab", "abc": "abc"}

"""The static leaderboard: content, escaping, determinism, extension point, and a real browser.

The browser test drives headless Chromium (Debian package `chromium`) over the DevTools
protocol on a pipe (--remote-debugging-pipe): no websocket library, no chromedriver, no
network port, so it is as robust as launching the browser itself.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from benchmark.results.result_store import write_result
from benchmark.site.build import SiteError
from tests.helpers.browser import CHROMIUM, Browser
from tests.helpers.paths import REPO
from tests.helpers.results import make_result, synthetic_results
from tests.helpers.site import build as _build

EVIL = '<img src=x onerror="window.pwned=1"><b>Evil</b> & co'


@pytest.fixture
def site_results(results_dir: Path) -> Path:
    synthetic_results(results_dir)
    rng = np.random.default_rng(3)
    write_result(results_dir, make_result("evil", "scifact", rng.uniform(0, 0.5, 120),
                                          display_name=EVIL, family="supervised"), None)
    return results_dir


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


@pytest.mark.slow
def test_site_pages_and_content(site_results, tmp_path):
    out = tmp_path / "site"
    report = _build(site_results, out)
    assert {"index.html", "tasks.html", "models.html", "reported.html", "method.html",
            "tasks/scifact.html", "tasks/nfcorpus.html", "queries/scifact.html",
            "models/bm25.html", "models/strong.html", "models/evil.html"} <= set(report.pages)
    assert (out / "static" / "style.css").is_file() and (out / "static" / "site.js").is_file()
    index = (out / "index.html").read_text()
    # the incomplete model is in its own table after the ranked one, with its coverage and no
    # mean (a mean over fewer tasks read as better than the ranked means: issue 20 item 7)
    ranked, partial = index.split('id="leaderboard-partial"')
    rows = re.findall(r'<tr data-family="[a-z]+" data-model="([a-z0-9.\-_]+)"', ranked)
    assert rows[0] == "strong" and "evil" not in rows
    assert 'data-model="evil"' in partial and "1/2" in partial
    assert 'class="num mean' not in partial
    assert 'class="mk up"' in index  # strong is significantly better than the baseline bm25
    task = (out / "tasks" / "scifact.html").read_text()
    assert 'class="heatmap' in task and "<svg" in task
    model = (out / "models" / "bm25.html").read_text()
    assert "k1" in model and "Provenance" in model  # card and provenance
    queries = (out / "queries" / "scifact.html").read_text()
    assert 'id="pq-data"' in queries and "q0000" in queries


@pytest.mark.slow
def test_html_in_names_is_escaped(site_results, tmp_path):
    out = tmp_path / "site"
    _build(site_results, out)
    for page in ("index.html", "models/evil.html", "tasks/scifact.html", "queries/scifact.html"):
        html = (out / page).read_text()
        assert "<b>Evil</b>" not in html and "<img src=x" not in html, page
    assert "&lt;b&gt;Evil&lt;/b&gt; &amp; co" in (out / "index.html").read_text()


@pytest.mark.slow
def test_build_is_deterministic_and_offline(site_results, tmp_path):
    _build(site_results, tmp_path / "a")
    _build(site_results, tmp_path / "b")
    first, second = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert first == second
    for name, data in first.items():
        text = data.decode("utf-8")
        # nothing is fetched from elsewhere: no remote scripts, stylesheets, images or fonts
        assert not re.search(r'<(script|link|img|iframe)[^>]+(src|href)="(https?:)?//', text), name
        assert "@import" not in text and "url(http" not in text, name


@pytest.mark.slow
def test_rebuild_replaces_a_site_but_not_other_folders(site_results, tmp_path):
    out = tmp_path / "site"
    _build(site_results, out)
    (out / "stale.html").write_text("old")
    _build(site_results, out)
    assert not (out / "stale.html").exists()
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    with pytest.raises(SiteError, match="not a maebench site"):
        _build(site_results, other)
    assert (other / "notes.txt").read_text() == "keep"


@pytest.mark.slow
def test_incomparable_result_is_flagged_not_compared(site_results, tmp_path):
    from benchmark.catalog.tasks import Fingerprints

    other = Fingerprints(corpus="e" * 64, queries="b" * 64, qrels="c" * 64)
    write_result(site_results, make_result("drift", "nfcorpus", np.ones(120),
                                           fingerprints=other), None)
    out = tmp_path / "site"
    _build(site_results, out)
    task = (out / "tasks" / "nfcorpus.html").read_text()
    assert "Not comparable" in task and "dataset fingerprints (corpus)" in task
    index = (out / "index.html").read_text()
    assert 'data-model="drift"' not in index  # never ranked on data it was not compared on


@pytest.mark.slow
def test_reported_numbers_are_separate(site_results, tmp_path):
    pytest.importorskip("benchmark.results.reported")
    folder = site_results / "reported"
    folder.mkdir()
    (folder / "test-paper.yaml").write_text(
        "source: {kind: paper, title: A Test Paper, arxiv: '2101.00001', table: Table 9}\n"
        "cells:\n"
        "  - {model: bm25, system: BM25, task: scifact, split: test, metric: nDCG@10,\n"
        "     value: 0.9876, confidence: high}\n"
    )
    out = tmp_path / "site"
    _build(site_results, out)
    assert "98.76" not in (out / "index.html").read_text()
    reported = (out / "reported.html").read_text()
    assert "98.76" in reported and "A Test Paper" in reported
    assert "98.76" in (out / "models" / "bm25.html").read_text()


@pytest.mark.slow
def test_reported_page_has_means_a_side_by_side_and_the_ms_marco_numbers(site_results, tmp_path):
    """Issue 20 item 4: an aggregate per model, reported next to measured, and MS MARCO MRR@10
    for the retrievers that report nothing else (their rows used to be all dots)."""
    folder = site_results / "reported"
    folder.mkdir()
    (folder / "test-paper.yaml").write_text(
        "source: {kind: paper, title: A Test Paper, table: Table 9}\n"
        "cells:\n"
        "  - {model: bm25, system: BM25, task: scifact, split: test, metric: nDCG@10,\n"
        "     value: 0.4322, confidence: high}\n"
        "  - {model: bm25, system: BM25, task: nfcorpus, split: test, metric: nDCG@10,\n"
        "     value: 0.3000, confidence: high}\n"
        "  - {model: marco-only, system: M, task: msmarco, split: dev, metric: MRR@10,\n"
        "     value: 0.4110, confidence: high}\n"
        "  - {model: marco-only, system: M, task: trec-dl-2019, split: test, metric: nDCG@10,\n"
        "     value: 0.7000, confidence: high}\n"
    )
    out = tmp_path / "site"
    _build(site_results, out)
    page = (out / "reported.html").read_text()
    matrix = page.split('id="matrix"')[1].split('id="versus"')[0]
    assert "36.61" in matrix and "(2)" in matrix  # bm25's mean over its two reported tasks
    assert "marco-only" not in matrix.split("Not in this table")[0]  # no row of dots
    assert "<code>marco-only</code>" in matrix  # named, with where its numbers are
    versus = page.split('id="versus"')[1].split('id="in-domain"')[0]
    from benchmark.results.result_store import read_result

    measured = read_result(site_results / "bm25" / "scifact.json").metrics["nDCG@10"]
    assert "43.22" in versus and f"{measured * 100:.2f}" in versus
    assert f"{(measured - 0.4322) * 100:+.2f}" in versus
    in_domain = page.split('id="in-domain"')[1].split('id="sources"')[0]
    assert "marco-only" in in_domain and "41.10" in in_domain and "MRR@10" in in_domain


def test_implausible_speeds_are_marked_and_explained(tmp_path):
    from benchmark.catalog.registry import load_cards
    from benchmark.site.timing import throughput, timing_flags
    from tests.helpers.results import make_result

    cards, _ = load_cards()
    results = []
    for i, seconds in enumerate((100.0, 110.0, 95.0, 2000.0)):
        r = make_result("all-minilm-l6-v2", f"task{i}", [0.5] * 10, timings={"encode_corpus": seconds})
        r.model.config["passage_max_length"] = 256
        results.append(r)
    flags = timing_flags(results, cards)
    assert list(flags) == [("all-minilm-l6-v2", "task3")] and "slower by 20x" in flags[
        ("all-minilm-l6-v2", "task3")]
    stored = make_result("all-minilm-l6-v2", "task9", [0.5] * 10, timings={"encode_corpus": 0.01})
    stored.provenance.runtime = {"embedding_store": {"shards_from_store": 1}}
    assert throughput(stored) is None and "embedding store" in timing_flags([stored], cards)[
        ("all-minilm-l6-v2", "task9")]


@pytest.mark.slow
def test_task_page_says_how_to_read_speeds(site_results, tmp_path):
    out = tmp_path / "site"
    _build(site_results, out)
    task = (out / "tasks" / "scifact.html").read_text()
    assert 'id="how-to-read-speed"' in task and "machine's load" in task


def test_plot_axes_never_run_below_a_floor():
    from benchmark.site.svgplot import Point, scatter

    points = [Point(x=0.0, y=59.2, label="baseline", group="mae"),
              Point(x=523.0, y=43.6, label="mlm", group="mae"),
              Point(x=29.0, y=0.04, label="bowpred", group="mae")]
    svg = scatter(points, "seconds", "score", x_floor=0.0, y_floor=0.0)
    ticks = re.findall(r'class="tick"[^>]*>([^<]+)<', svg)
    assert ticks and not any(t.startswith("-") for t in ticks)
    assert "-" in "".join(re.findall(r'class="tick"[^>]*>([^<]+)<', scatter(points, "s", "y")))
    halves = scatter([Point(x=1, y=58.9, label="a", group="x"), Point(x=2, y=68.6, label="b",
                                                                    group="x")], "x", "y")
    assert ">62.5<" in halves  # a 2.5 step keeps its decimal (it printed 62)


@pytest.mark.slow
def test_plugin_pages_extension_point(site_results, tmp_path, monkeypatch):
    from benchmark.site import pages

    renders = []

    def render(env):
        renders.append(env.globals["nav"][-1])
        page = env.from_string(
            '{% extends "base.html" %}{% block content %}<p id="extra">{{ note }}</p>'
            "{% endblock %}"
        ).render(root="", title="Extra", note="<i>hi</i>")
        return {"extra.html": page}

    def extra(results_dir):
        return pages.Pages(nav=(("Extra", "extra.html"),), render=render)

    monkeypatch.setattr(pages, "PLUGIN_PAGES", [extra])
    out = tmp_path / "site"
    report = _build(site_results, out)
    # rendered once, with the complete navigation; after the site's own pages; in the report
    assert renders == [{"label": "Extra", "href": "extra.html"}] and "extra.html" in report.pages
    extra_page = (out / "extra.html").read_text()
    assert '<p id="extra">&lt;i&gt;hi&lt;/i&gt;</p>' in extra_page
    assert 'href="extra.html">Extra</a>' in extra_page  # the extra page's own nav is complete
    assert 'href="../extra.html">Extra</a>' in (out / "tasks" / "scifact.html").read_text()
    assert 'href="extra.html">Extra</a>' in (out / "index.html").read_text()


# --------------------------------------------------------------------------- real browser



ROW_ORDER = "[...document.querySelectorAll('#leaderboard tbody tr')].map(r => r.dataset.model)"
VISIBLE_ROWS = ("[...document.querySelectorAll('#leaderboard tbody tr')]"
                ".filter(r => !r.hidden).map(r => r.dataset.model)")


@pytest.mark.slow
def test_site_in_headless_chromium(site_results, tmp_path):
    if not CHROMIUM.is_file():
        pytest.skip("/usr/bin/chromium not found (apt-get install -y chromium); browser test "
                    "skipped")
    out = tmp_path / "site"
    _build(site_results, out)
    browser = Browser(tmp_path / "chrome-profile")
    try:
        browser.open((out / "index.html").as_uri())
        assert browser.eval("document.querySelectorAll('#leaderboard tbody tr').length") == 3
        assert browser.eval("[...document.querySelectorAll('#leaderboard-partial tbody tr')]"
                            ".map(r => r.dataset.model)") == ["evil"]
        assert browser.eval("document.querySelector('#leaderboard td.model').textContent"
                            ".trim()") == "STRONG"
        assert browser.eval("window.pwned === undefined && !document.querySelector('td.model b')")
        before = browser.eval(ROW_ORDER)
        assert before[0] == "strong"
        browser.click("#leaderboard thead th:nth-child(2)")  # the model column, A to Z
        after = browser.eval(ROW_ORDER)
        assert after != before and sorted(after) == sorted(before)
        assert after == ["bm25", "near", "strong"]
        browser.click("#leaderboard thead th:nth-child(2)")  # again: Z to A
        assert browser.eval(ROW_ORDER) == after[::-1]
        browser.click("input[data-family='mae']")  # hide the MAE family
        assert "strong" not in browser.eval(VISIBLE_ROWS)
        shot = tmp_path / "index.png"
        browser.screenshot(shot)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5000

        browser.open((out / "queries" / "scifact.html").as_uri())
        rows = browser.eval("document.querySelectorAll('#pq-table tbody tr').length")
        assert rows == 120
        browser.eval("(() => { const s = document.getElementById('pq-b'); s.value = 'strong';"
                     "s.dispatchEvent(new Event('change')); })()")
        summary = browser.eval("document.getElementById('pq-summary').textContent")
        assert summary.startswith("A wins") and "of 120 queries" in summary
    finally:
        browser.close()


def test_unknown_metric_or_baseline_is_refused(site_results, tmp_path):
    from typer.testing import CliRunner

    from benchmark.cli import app

    for args, message in ((["--metric", "foo"], "unknown metric 'foo'"),
                          (["--baseline", "nope"], "baseline 'nope' has no results")):
        out = CliRunner().invoke(app, ["site", "--results-dir", str(site_results),
                                       "--out", str(tmp_path / "s"), *args])
        assert out.exit_code != 0 and message in str(out.exception)
        assert not (tmp_path / "s").exists()


def test_study_page_axes_from_zero_flagged_times_and_unwrapped_p_values(tmp_path):
    """Issue 20 items 5 and 8 on the committed scifact-dapt report: the plot's axes start at 0
    (they ran to -200 s and -20), an arm whose seeds took 29 s and 1,016 s for the same work is
    marked, and p-values sit in cells that do not wrap ("1e-" / "04")."""

    from benchmark.site.output import write_files
    from benchmark.site.study_pages import study_pages, time_flags
    from benchmark.site.templating import jinja_environment

    repo = REPO
    report_path = repo / "results" / "studies" / "scifact-dapt.json"
    if not report_path.is_file():
        pytest.skip("no committed scifact-dapt report")
    report = json.loads(report_path.read_text())
    flags = time_flags(report)
    assert "mlm" in flags and "1,016" in flags["mlm"] and "finetune-only" not in flags
    results = tmp_path / "results"
    (results / "studies").mkdir(parents=True)
    (results / "studies" / "scifact-dapt.json").write_text(report_path.read_text())
    out = tmp_path / "site"
    out.mkdir()
    (out / "static").mkdir()
    env = jinja_environment(repo / "site" / "templates")
    env.globals["nav"] = []
    write_files(study_pages(results).render(env), out)
    page = (out / "study-scifact-dapt.html").read_text()
    ticks = re.findall(r'class="tick"[^>]*>([^<]+)<', page)
    assert ticks and not any(t.startswith("-") for t in ticks)
    assert 'id="how-to-read-time"' in page and 'class="data study results"' in page
    # a p-value like 1e-04 sits in a number cell of a study table, which never wraps
    assert re.search(r'<td class="num[^"]*"[^>]*>\d(\.\d+)?e-0\d</td>', page)
    css = (repo / "site" / "static" / "style.css").read_text()
    assert "table.data.study td, table.data.study th { white-space: nowrap; }" in css

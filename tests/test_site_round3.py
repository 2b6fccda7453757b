"""Reading the site (issue 28, item 5): tied scores share a rank, the same weights timed far
apart are marked with the reason in view, plot text is readable at 400 px, headers never break
inside a word, each study has its own line on the studies index, and `compare` names the Holm
family on every line."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest

from benchmark.results.result_store import read_result, write_result
from tests.helpers.browser import CHROMIUM, Browser
from tests.helpers.paths import REPO
from tests.helpers.results import make_result
from tests.helpers.site import build as _build


@pytest.fixture
def site_results(results_dir: Path) -> Path:
    """The synthetic results of tests/test_compare.py (bm25, strong, ... on scifact, nfcorpus)."""
    from tests.helpers.results import synthetic_results

    synthetic_results(results_dir)
    return results_dir


def _twin(results_dir: Path, source: str, task: str, name: str, seconds: float) -> None:
    """A copy of `source`'s result under another name (the same weights: its tie and its
    speed), encoded in `seconds`."""
    r = copy.deepcopy(read_result(results_dir / source / f"{task}.json"))
    r.model.name, r.model.display_name = name, name
    r.provenance.timings["encode_corpus"] = seconds
    write_result(results_dir, r, None)


def test_competition_ranks():
    from benchmark.comparison.compare import competition_ranks

    assert competition_ranks([0.7, 0.6, 0.6, 0.5]) == [1, 2, 2, 4]
    assert competition_ranks([0.5, 0.5]) == [1, 1]


@pytest.mark.slow
def test_tied_scores_share_a_rank_on_the_task_page(site_results, tmp_path):
    _twin(site_results, "strong", "scifact", "strong-copy", 10.0)
    out = tmp_path / "site"
    _build(site_results, out)
    page = (out / "tasks" / "scifact.html").read_text()
    rows = re.findall(r'<td class="num" data-sort="(\d+)"[^>]*>(\d+)</td>\s*<td class="model">'
                      r'<a href="../models/([^"]+)\.html"', page)
    ranks = {name: int(rank) for _, rank, name in rows}
    assert ranks["strong"] == ranks["strong-copy"] == 1
    assert sorted(ranks.values())[:3] == [1, 1, 3]  # the next model is third, not second
    assert "tied scores share a rank" in page


def _dense(name: str, task: str, seconds: float, weights: str = "sha256:" + "ab" * 32):
    r = make_result(name, task, [0.5] * 10, timings={"encode_corpus": seconds})
    r.model.kind = "dense"
    r.model.config["passage_max_length"] = 256
    r.provenance.runtime = {"weights_identity": {"passage": weights, "query": weights}}
    return r


def test_the_same_weights_timed_far_apart_are_marked_with_the_reason():
    from benchmark.site.timing import timing_flags

    # 3.3 and 9.6 documents/s for one checkpoint on one task and machine (issue 28)
    a, b = _dense("all-minilm-l6-v2", "scifact", 100 / 3.3), _dense("my-encoder", "scifact", 100 / 9.6)
    a.task.n_docs = b.task.n_docs = 100
    flags = timing_flags([a, b], {})
    assert set(flags) == {("all-minilm-l6-v2", "scifact"), ("my-encoder", "scifact")}
    assert "my-encoder 9.6 docs/s" in flags[("all-minilm-l6-v2", "scifact")]
    assert "2.9x apart" in flags[("my-encoder", "scifact")]
    # other weights, another task or a spread under 2x: nothing to say
    c = _dense("other", "scifact", 100 / 9.6, weights="sha256:" + "cd" * 32)
    d = _dense("my-encoder", "nfcorpus", 100 / 9.6)
    e = _dense("again", "scifact", 100 / 5.0)
    for r in (c, d, e):
        r.task.n_docs = 100
    assert timing_flags([a, c, d], {}) == {}
    assert timing_flags([a, e], {}) == {}


@pytest.mark.slow
def test_the_reason_for_an_implausible_speed_is_visible(site_results, tmp_path):
    for name, seconds in (("dense-a", 10.0), ("dense-b", 40.0)):
        r = _dense(name, "scifact", seconds)
        src = read_result(site_results / "strong" / "scifact.json")
        r.task, r.per_query, r.metrics = src.task, src.per_query, src.metrics
        write_result(site_results, r, None)
    out = tmp_path / "site"
    _build(site_results, out)
    page = (out / "tasks" / "scifact.html").read_text()
    notes = page.split('id="implausible-speeds"')[1].split("</div>")[0]
    assert "dense-a" in notes and "dense-b" in notes and "4.0x apart" in notes


def test_plot_text_is_at_least_10px_when_the_plot_is_380px_wide():
    from benchmark.site import svgplot
    from benchmark.site.svgplot import Point, scatter

    svg = scatter([Point(x=1, y=50, label="a model", group="x"),
                   Point(x=9, y=60, label="another", group="x")], "speed", "score", log_x=True)
    sizes = [float(s) for s in re.findall(r'font-size="([\d.]+)"', svg)]
    assert len(sizes) == svg.count("<text")  # every text says its size
    assert min(sizes) * 380 / svgplot.WIDTH >= 10.0


def test_study_index_lines_are_distinct():
    from benchmark.site.study_pages import index_description

    reports = {p.stem: json.loads(p.read_text()) for p in
               sorted((REPO / "results" / "studies").glob("*.json"))}
    lines = {sid: index_description(r) for sid, r in reports.items()}
    assert len(set(lines.values())) == len(lines)
    assert lines["scratch-mae-smoke"] != lines["scratch-mae"]
    # a report written before profiles carried a description: the line says which profile it is
    # and what the profile changes
    older = copy.deepcopy(reports["scratch-mae-smoke"])
    older["study"]["profiles"]["smoke"].pop("description", None)
    smoke = index_description(older)
    assert "'smoke' profile" in smoke and "seeds [0]" in smoke
    # a profile with its own description (the spec's smoke profile now has one) shows it
    report = copy.deepcopy(reports["scratch-mae-smoke"])
    report["study"]["profiles"]["smoke"]["description"] = "The smoke run."
    assert index_description(report) == "The smoke run."
    from benchmark.studies.spec import load_spec

    assert load_spec("scratch-mae", profile="smoke").description != \
        load_spec("scratch-mae").description


def test_compare_names_the_holm_family_on_every_line(results_dir):
    from benchmark.comparison.compare import StatsOptions, build_report, load_table
    from benchmark.comparison.report import to_markdown
    from tests.helpers.results import synthetic_results

    synthetic_results(results_dir)
    table = load_table(results_dir)
    fast = StatsOptions(n_perm=10_000, n_boot=1000)
    by_task = to_markdown(build_report(table, ["scifact"], None, fast))
    by_models = to_markdown(build_report(table, None, ["strong", "bm25"], fast))
    lines_task = [line for line in by_task.splitlines() if line.startswith("| scifact")]
    lines_models = [line for line in by_models.splitlines() if line.startswith("| ")
                    and "strong" in line and "bm25" in line]
    assert lines_task and all(re.search(r"\| \d+: all pairs, scifact \|$", ln) for ln in lines_task)
    assert lines_models and all(re.search(r"\| \d+: all pairs, (scifact|\d tasks) \|$", ln)
                                for ln in lines_models)
    assert "every pair of the" in by_task and "models given" in by_models


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium")
def test_at_400px_plot_text_is_readable_and_headers_keep_their_words(site_results, tmp_path):
    out = tmp_path / "site"
    _build(site_results, out)
    browser = Browser(tmp_path / "chrome", width=400, height=900)
    try:
        browser.open((out / "tasks" / "scifact.html").as_uri())
        heights = browser.eval(
            "Array.from(document.querySelectorAll('svg.plot text')).map("
            "t => t.getBoundingClientRect().height)")
        assert heights and min(heights) >= 10.0, heights
        browser.screenshot(tmp_path / "task-400.png")
        browser.open((out / "reported.html").as_uri())
        # every word of every header sits on one line (a word split across lines has two rects)
        broken = browser.eval("""(() => {
          const out = [];
          for (const th of document.querySelectorAll('table.data thead th')) {
            if (th.offsetParent === null) continue;
            const walker = document.createTreeWalker(th, NodeFilter.SHOW_TEXT);
            for (let n = walker.nextNode(); n; n = walker.nextNode()) {
              const re = /\\S+/g; let m;
              while ((m = re.exec(n.data))) {
                const r = document.createRange();
                r.setStart(n, m.index); r.setEnd(n, m.index + m[0].length);
                if (r.getClientRects().length > 1) out.push(m[0]);
              }
            }
          }
          return out; })()""")
        assert broken == []
    finally:
        browser.close()

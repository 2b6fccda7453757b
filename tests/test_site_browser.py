"""The site read in real headless Chromium, at 1400 px and at 400 px (a phone).

Built from the committed results (SciFact, NFCorpus) plus BM25 flat / multifield and an exact
copy of BM25 (a tie) on the embedded tiny task, so the per-query page has real query texts,
runs and judgements. Screenshots of the leaderboard, a task, a model and the per-query page at
both widths are saved for review: under $MAEBENCH_SCREENSHOTS when set, else the test's tmp
folder (printed).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from benchmark.comparison.compare import StatsOptions
from benchmark.site.build import SiteOptions, build_site
from tests.helpers.browser import CHROMIUM, Browser
from tests.helpers.paths import BEIR_DIR, REPO

FAST = StatsOptions(n_perm=2000, n_boot=2000)
pytestmark = pytest.mark.slow  # headless Chromium on a site of every stored result
PAGES = {"leaderboard": "index.html", "task": "tasks/scifact.html",
         "model": "models/all-minilm-l6-v2.html",
         "per-query": "queries/tiny.html#a=bm25-multifield&b=bm25",  # a pair that differs
         "reported": "reported.html", "study": "study-scifact-dapt.html",
         "reproductions": "reproduction.html"}
# pages whose tables must show every column without sideways scrolling at 1400 and 400 px
# (on a phone the columns marked "opt" are dropped on purpose)
NO_CLIPPED_COLUMN = ("leaderboard", "task", "reported", "study", "reproductions")
CLIPPED = """[...document.querySelectorAll('.table-wrap')].filter(w => w.offsetParent)
    .filter(w => w.scrollWidth > w.clientWidth + 1)
    .map(w => [(w.querySelector('table') || {}).className, w.scrollWidth, w.clientWidth])"""


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    from benchmark.catalog.registry import get_card
    from benchmark.catalog.tasks import get_task
    from benchmark.pipeline.runner import RunOptions, run_task
    from benchmark.results.result_store import read_result, write_result

    root = tmp_path_factory.mktemp("browser-site")
    results = root / "results"
    shutil.copytree(REPO / "results", results)
    for name in ("bm25", "bm25-multifield"):
        run_task(get_card(name), get_task("tiny"), RunOptions(results_dir=results))
    # an exact copy of BM25 under another name: a tie the ranks must show consistently
    copy = read_result(results / "bm25" / "tiny.json")
    copy.model.name, copy.model.display_name = "bm25-copy", "BM25 (copy)"
    write_result(results, copy, (results / "bm25" / "tiny.run.gz").read_bytes())
    for task in ("scifact", "nfcorpus"):
        twin = read_result(results / "bm25" / f"{task}.json")
        twin.model.name, twin.model.display_name = "bm25-copy", "BM25 (copy)"
        write_result(results, twin, (results / "bm25" / f"{task}.run.gz").read_bytes())
    data = BEIR_DIR
    build_site(SiteOptions(results_dir=results, out_dir=root / "site", stats=FAST,
                           data_dir=data if data.is_dir() else None))
    return root / "site"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not CHROMIUM.is_file():
        pytest.skip("/usr/bin/chromium not found (apt-get install -y chromium); browser test "
                    "skipped")
    b = Browser(tmp_path_factory.mktemp("chrome-profile"), width=1400, height=900)
    yield b
    b.close()


def _open(browser: Browser, url: str, width: int) -> None:
    """Show `url` at `width` px (a phone below 600) in one reused tab."""
    import time

    if browser.session is None:
        browser.open("about:blank")
    browser.send("Emulation.setDeviceMetricsOverride",
                 {"width": width, "height": 900 if width > 600 else 800,
                  "deviceScaleFactor": 1, "mobile": width <= 600})
    browser.send("Page.navigate", {"url": url})
    for _ in range(400):
        if browser.eval(f"document.URL === {json.dumps(url)} && "
                        "document.readyState === 'complete'"):
            return
        time.sleep(0.025)
    raise TimeoutError(url)


def _shots_dir(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("MAEBENCH_SCREENSHOTS", tmp_path / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_markers_and_matrix_use_one_family(site, browser):
    _open(browser, (site / "index.html").as_uri(), 1400)
    assert "one family per task" in browser.eval("document.getElementById('family-def').textContent")
    marks = browser.eval("""[...document.querySelectorAll('#leaderboard tbody tr')].flatMap(tr =>
        [...tr.querySelectorAll('td.score')].filter(td => td.querySelector('.mk')).map(td =>
        [tr.dataset.model, td.title.split(' on ')[1].split(':')[0],
         td.querySelector('.mk').classList.contains('up') ? 'better' : 'worse']))""")
    assert marks, "expected significance markers against BM25 on the real results"
    for model, task, verdict in marks:
        _open(browser, (site / "tasks" / f"{task}.html").as_uri(), 1400)
        cell = browser.eval(f"""(() => {{
            const names = [...document.querySelectorAll('table.heatmap th.rowname')]
                .map(th => th.title);
            const row = names.indexOf({json.dumps(model)}), col = names.indexOf('bm25');
            const tr = document.querySelectorAll('table.heatmap tbody tr')[row];
            return tr.querySelectorAll('td')[col].className; }})()""")
        assert cell == verdict, (model, task, verdict, cell)


def test_tied_ranks_are_shared_and_inside_their_interval(site, browser):
    _open(browser, (site / "index.html").as_uri(), 1400)
    rows = browser.eval("""[...document.querySelectorAll('#leaderboard tbody tr')].map(tr =>
        [tr.dataset.model, tr.querySelector('td.rank').textContent.trim(),
         tr.querySelector('td.rank-ci').textContent.trim()])""")
    ranks = {m: (r, ci) for m, r, ci in rows}
    assert ranks["bm25"][0] == ranks["bm25-copy"][0]  # identical scores, identical rank
    for model, (rank, interval) in ranks.items():
        if rank == "–":
            continue
        low, high = (int(x) for x in interval.split("–"))
        assert low <= int(rank) <= high, (model, rank, interval)


def test_plots_have_no_overlapping_labels_and_distinct_ticks(site, browser):
    _open(browser, (site / "index.html").as_uri(), 1400)
    # one model with a parameter count covers every task here: no size plot of one point
    assert not browser.eval("document.querySelector('svg.plot')")
    assert "(now: 1)" in browser.eval("document.getElementById('size-plot-note').textContent")
    for page in ("tasks/scifact.html", "tasks/tiny.html", "study-scifact-dapt.html"):
        _open(browser, (site / page).as_uri(), 1400)
        plots = browser.eval("""[...document.querySelectorAll('svg.plot')].map(svg => {
            const box = e => { const b = e.getBBox(); return [b.x, b.y, b.x + b.width, b.y + b.height]; };
            return {labels: [...svg.querySelectorAll('text.pt-label')].map(box),
                    dots: [...svg.querySelectorAll('circle')].map(box),
                    yticks: [...svg.querySelectorAll('text.tick[text-anchor=end]')].map(t => t.textContent),
                    xticks: [...svg.querySelectorAll('text.tick[text-anchor=middle]')]
                        .map(t => t.textContent)};
        })""")
        assert plots, page
        for plot in plots:
            assert len(set(plot["yticks"])) == len(plot["yticks"]) >= 3, (page, plot["yticks"])
            # scores, times and speeds cannot be negative: no axis runs below zero
            ticks = plot["yticks"] + plot["xticks"]
            assert all(not t.startswith("-") for t in ticks), (page, ticks)
            boxes = plot["labels"]
            for i, a in enumerate(boxes):
                for b in boxes[i + 1:] + plot["dots"]:
                    overlap = a[0] < b[2] - 0.5 and b[0] < a[2] - 0.5 and \
                        a[1] < b[3] - 0.5 and b[1] < a[3] - 0.5
                    assert not overlap, (page, a, b)


def test_phone_width_shows_name_and_score_without_sideways_scrolling(site, browser, tmp_path):
    shots = _shots_dir(tmp_path)
    for label, page in PAGES.items():
        for width in (1400, 400):
            path, _, fragment = page.partition("#")
            _open(browser, (site / path).as_uri() + (f"#{fragment}" if fragment else ""), width)
            browser.screenshot(shots / f"{label}-{width}.png")
            if width == 400:
                assert browser.eval("document.documentElement.scrollWidth") <= 400, page
            if label in NO_CLIPPED_COLUMN:
                assert browser.eval(CLIPPED) == [], (page, width)
    print(f"\nscreenshots in {shots}")
    _open(browser, (site / "index.html").as_uri(), 400)
    box = browser.eval("""(() => { const tr = document.querySelector('#leaderboard tbody tr');
        return [...tr.querySelectorAll('td.model a, td.mean')].map(e => {
            const r = e.getBoundingClientRect(); return [r.left, r.right, e.textContent.trim()]; }); })()""")
    assert len(box) == 2 and all(left >= 0 and right <= 400 for left, right, _ in box), box
    assert box[1][2] and float(box[1][2]) > 0
    _open(browser, (site / PAGES["model"]).as_uri(), 400)
    right = browser.eval("document.querySelector('#main-score .score-big').getBoundingClientRect().right")
    assert 0 < right <= 400


def test_per_query_page_texts_top10_relevance_and_links(site, browser):
    url = (site / "queries" / "tiny.html").as_uri()
    _open(browser, url, 1400)
    detail = browser.eval("""(() => ({
        hidden: document.getElementById('pq-detail').hidden,
        text: document.getElementById('pq-query-text').textContent,
        a: document.querySelectorAll('#pq-a-list li').length,
        b: document.querySelectorAll('#pq-b-list li').length,
        relevant: document.querySelectorAll('#pq-detail li.relevant .rel').length,
        firstRowText: document.querySelector('#pq-table tbody td.query .qtext').textContent }))()""")
    assert not detail["hidden"] and len(detail["text"]) > 5
    assert detail["a"] == detail["b"] == 10 and detail["relevant"] >= 1
    assert detail["firstRowText"].strip()
    texts = {q["_id"]: q["text"] for q in map(json.loads, (
        REPO / "benchmark" / "data" / "tiny" / "queries.jsonl").read_text().splitlines())}
    qid = browser.eval("JSON.parse(document.getElementById('pq-data').textContent).qids")[-1]
    _open(browser, f"{url}#a=bm25-multifield&b=bm25&q={qid}", 1400)
    state = browser.eval("""[document.getElementById('pq-a').value, document.getElementById('pq-b').value,
        document.getElementById('pq-query-text').textContent,
        document.getElementById('pq-a-title').textContent]""")
    assert state[:3] == ["bm25-multifield", "bm25", texts[qid]]
    assert state[3].startswith("BM25")


def test_models_and_tasks_list_everything(site, browser):
    from benchmark.catalog.registry import load_cards
    from benchmark.catalog.tasks import all_tasks

    cards, _ = load_cards()
    _open(browser, (site / "models.html").as_uri(), 1400)
    listed = set(browser.eval("[...document.querySelectorAll('#models-table tbody tr')]"
                              ".map(tr => tr.dataset.model)"))
    assert set(cards) <= listed
    assert browser.eval("document.querySelectorAll('#models-table .no-results').length") >= 1
    _open(browser, (site / "tasks.html").as_uri(), 1400)
    tasks = set(browser.eval("[...document.querySelectorAll('#tasks-table tbody tr')]"
                             ".map(tr => tr.dataset.task)"))
    assert {t.name for t in all_tasks() if t.part_of is None} == tasks
    assert browser.eval("document.querySelectorAll('#tasks-table .no-results').length") >= 1
    with_results = {d.name for d in (site.parent / "results").iterdir() if d.is_dir()}
    empty = sorted(set(cards) - with_results)[0]
    _open(browser, (site / "models" / f"{empty}.html").as_uri(), 1400)
    assert "No results yet" in browser.eval("document.body.textContent")


def test_not_run_cells_are_collapsed_by_reason(site, browser):
    _open(browser, (site / "reproduction.html").as_uri(), 1400)
    rows_not_run = browser.eval("[...document.querySelectorAll('table.data td')]"
                                ".filter(td => td.textContent.trim() === 'NOT RUN').length")
    groups = browser.eval("document.querySelectorAll('details.not-run').length")
    cells = browser.eval("document.querySelectorAll('details.not-run li').length")
    assert rows_not_run == 0 and groups >= 1 and cells > groups
    assert browser.eval("[...document.querySelectorAll('details.not-run')].every(d => !d.open)")

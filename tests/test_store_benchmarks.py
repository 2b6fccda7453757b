"""Declared benchmarks: data validated against the catalog, ranking only on full coverage,
coverage listed otherwise, the "config differs from current card" mark, one page each."""

from __future__ import annotations

import pytest

from benchmark.catalog.benchmarks import Benchmark, BenchmarkError, load_benchmarks, parse_benchmarks
from benchmark.catalog.registry import get_card
from benchmark.comparison.compare import load_table
from benchmark.comparison.standings import config_differs, standings
from benchmark.site.benchmark_pages import benchmark_pages
from tests.helpers.paths import REPO


def test_declared_benchmarks_and_their_sizes():
    benches = {b.id: b for b in load_benchmarks()}
    assert {k: len(b.tasks) for k, b in benches.items()} == {
        "beir-18": 18, "beir-13": 13, "msmarco-dl": 3, "mteb-en-retrieval": 15,
    }
    assert benches["msmarco-dl"].metric_for("msmarco") == "MRR@10"
    assert benches["msmarco-dl"].metric_for("trec-dl-2019") == "nDCG@10"
    assert set(benches["beir-13"].tasks) < set(benches["beir-18"].tasks)


@pytest.mark.parametrize(("text", "message"), [
    ("benchmarks: [{id: x, title: t, description: d, source: s, main_metric: nDCG@10, tasks: [nope]}]",
     "unknown task"),
    ("benchmarks: [{id: x, title: t, description: d, source: s, main_metric: F1, tasks: [scifact]}]",
     "unknown metric"),
    ("benchmarks: [{id: x, title: t, description: d, source: s, main_metric: nDCG@10, tasks: [scifact, "
     "scifact]}]", "listed twice"),
    ("benchmarks: [{id: x, title: t, description: d, source: s, main_metric: nDCG@10, tasks: []}]",
     "tasks"),
])
def test_malformed_benchmarks_are_one_line_errors(text, message):
    with pytest.raises((BenchmarkError, Exception), match=message):
        parse_benchmarks(text, "b.yaml")


def _bench(*tasks: str) -> Benchmark:
    return Benchmark(id="two", title="Two", description="d", source="s", main_metric="nDCG@10",
                     tasks=list(tasks))


def test_ranked_only_with_full_coverage():
    models = {"bm25", "bm25-multifield", "all-minilm-l6-v2"}  # committed on both tasks
    table = {t: {m: r for m, r in rs.items() if m in models}
             for t, rs in load_table(REPO / "results").items()}
    if any(set(table.get(t, {})) != models for t in ("scifact", "nfcorpus")):
        pytest.skip("committed scifact/nfcorpus results not found")
    board = standings(_bench("scifact", "nfcorpus"), table)
    assert all(s.rank is not None for s in board)
    means = [s.mean for s in board]
    assert means == sorted(means, reverse=True)
    # drop one task of one model: it is listed with its coverage, never ranked on one task
    model = board[0].model
    del table["nfcorpus"][model]
    board = standings(_bench("scifact", "nfcorpus"), table)
    partial = [s for s in board if s.rank is None]
    assert [(s.model, s.covered, s.missing) for s in partial] == [(model, 1, ["nfcorpus"])]
    assert board[0].rank == 1 and board[-1] is partial[0]


def test_config_differs_from_current_card():
    table = load_table(REPO / "results")
    if "scifact" not in table or "bm25" not in table["scifact"]:
        pytest.skip("committed bm25/scifact result not found")
    result = table["scifact"]["bm25"]
    card = get_card("bm25")
    assert not config_differs(result, card)
    changed = card.model_copy(update={"retriever": card.retriever.model_copy(update={"k1": 0.9})})
    assert config_differs(result, changed)
    assert config_differs(result, None)


def test_one_page_per_benchmark(tmp_path):
    from benchmark.core.paths import site_dir
    from benchmark.site.output import write_files
    from benchmark.site.templating import jinja_environment

    env = jinja_environment(site_dir() / "templates")
    env.globals["nav"] = []
    env.globals["cards"] = {"bm25": get_card("bm25")}
    pages = benchmark_pages(REPO / "results")
    assert pages.nav == (("Benchmarks", "benchmarks.html"),)
    write_files(pages.render(env), tmp_path)
    for bench in load_benchmarks():
        page = (tmp_path / f"benchmark-{bench.id}.html").read_text()
        assert bench.title in page
    index = (tmp_path / "benchmarks.html").read_text()
    assert "benchmark-beir-13.html" in index


@pytest.mark.slow
def test_leaderboard_and_model_page_mark_a_result_whose_card_changed(tmp_path):
    """A hand-edited card (k1 changed) must not silently lend its name to the old numbers."""
    import shutil

    from benchmark.site.build import SiteOptions, build_site
    from tests.helpers.results import FAST

    if not (REPO / "results" / "bm25" / "scifact.json").is_file():
        pytest.skip("committed bm25/scifact result not found")
    models = tmp_path / "models"
    shutil.copytree(REPO / "models", models)
    card_file = models / "bm25.yaml"
    text = card_file.read_text()
    assert "k1: 1.5" in text
    card_file.write_text(text.replace("k1: 1.5", "k1: 0.9"))

    def build(models_dir, out):
        build_site(SiteOptions(results_dir=REPO / "results", out_dir=out, stats=FAST,
                               models_dir=models_dir))
        return (out / "index.html").read_text(), (out / "models" / "bm25.html").read_text()

    index, model_page = build(models, tmp_path / "edited")
    assert "config differs from card" in index and "config differs from card" in model_page
    index, model_page = build(None, tmp_path / "current")
    assert "config differs from card" not in index + model_page


@pytest.mark.slow
def test_an_approximate_result_is_labelled_wherever_its_score_is_shown(tmp_path):
    """Issue 10: the site never ranks an approximate (ANN) result among exact ones unlabelled."""
    import shutil

    from benchmark.results.result_store import read_result, write_result
    from benchmark.site.build import SiteOptions, build_site
    from tests.helpers.results import FAST

    source = REPO / "results" / "all-minilm-l6-v2"
    if not (source / "scifact.json").is_file():
        pytest.skip("committed all-minilm-l6-v2/scifact result not found")
    results = tmp_path / "results"
    shutil.copytree(REPO / "results" / "bm25", results / "bm25")
    result = read_result(source / "scifact.json")
    result.model.name, result.model.display_name = "minilm-hnsw", "MiniLM (HNSW)"
    result.provenance.runtime["search"] = {"kind": "approximate", "method": "hnsw",
                                           "recall@1000_vs_exact": 0.987}
    write_result(results, result, (source / "scifact.run.gz").read_bytes())
    out = tmp_path / "site"
    build_site(SiteOptions(results_dir=results, out_dir=out, stats=FAST))
    for page in ("index.html", "tasks/scifact.html", "models/minilm-hnsw.html"):
        html = (out / page).read_text()
        assert "approximate search (hnsw); recall@1000_vs_exact 0.987" in html, page
    assert "approximate search" not in (out / "models" / "bm25.html").read_text()

"""MTEB interoperability: the same tiny model scored by our pipeline and by mteb's own
evaluation agrees; results export to MTEB's result-file format and import back as reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.catalog.registry import get_card
from benchmark.catalog.tasks import get_task
from benchmark.datasets.beir import load_dataset
from benchmark.pipeline.runner import RunOptions, run_task
from benchmark.results.result_store import read_result
from benchmark.retrievers.mteb_adapter import MaebenchEncoder, MaebenchSearch
from tests.helpers.cards import make_card
from tests.helpers.paths import REPO

pytestmark = pytest.mark.slow  # every test imports mteb (scikit-learn, pandas)


@pytest.fixture(autouse=True)
def _mteb():
    """Skip without mteb; imported when a test runs, not at collection (mteb and its
    scikit-learn and pandas took a third of collecting the suite)."""
    pytest.importorskip("mteb")


def tiny_mteb_task():
    """Our embedded tiny task as an mteb retrieval task, loaded from local files (no network)."""
    from datasets import Dataset as HFDataset
    from mteb.abstasks.retrieval import AbsTaskRetrieval
    from mteb.abstasks.task_metadata import TaskMetadata

    class MaebenchTiny(AbsTaskRetrieval):
        metadata = TaskMetadata(
            name="MaebenchTiny", description="maebench's embedded smoke-test task",
            reference="https://example.org/maebench", type="Retrieval", category="t2t",
            modalities=["text"], eval_splits=["test"], eval_langs=["eng-Latn"],
            main_score="ndcg_at_10", dataset={"path": "maebench/tiny", "revision": "local"},
            date=("2024-01-01", "2024-01-02"), domains=[], task_subtypes=[], license="cc0-1.0",
            annotations_creators="expert-annotated", dialect=[], sample_creation="created",
            bibtex_citation="",
        )

        def load_data(self, num_proc: int | None = None, **kwargs) -> None:
            data = load_dataset(get_task("tiny"))
            corpus = HFDataset.from_list(
                [{"id": d, "title": doc.title, "text": doc.text} for d, doc in data.corpus.items()]
            )
            queries = HFDataset.from_list([{"id": q, "text": t} for q, t in data.queries.items()])
            split = {"corpus": corpus, "queries": queries, "relevant_docs": data.qrels,
                     "top_ranked": None}
            self.dataset = {"default": {"test": split}}
            self.data_loaded = True

    return MaebenchTiny()


def mteb_ndcg10(model) -> float:
    import mteb

    result = mteb.evaluate(model, tiny_mteb_task(), cache=None, show_progress_bar=False)
    return result.task_results[0].scores["test"][0]["ndcg_at_10"]


def our_ndcg10(card, tmp_path: Path) -> float:
    path = run_task(card, get_task("tiny"), RunOptions(results_dir=tmp_path, device="cpu"))
    return read_result(path).metrics["nDCG@10"]


@pytest.fixture(scope="module")
def spread_bert_dir(tmp_path_factory, tiny_texts) -> Path:
    """A tiny BERT whose vectors depend on the words (distinct scores: no tie-order noise)."""
    from tests.helpers.checkpoints import tiny_bert

    return tiny_bert(tmp_path_factory.mktemp("spread"), tiny_texts, seed=5, initializer_range=0.5)


@pytest.mark.parametrize("variant", ["cls-dot-prefix", "mean-cosine"])
def test_mteb_encoder_protocol_agrees_with_our_pipeline(variant, spread_bert_dir, tmp_path):
    if variant == "cls-dot-prefix":
        card = make_card(spread_bert_dir, query_prefix="query: ", passage_prefix="passage: ")
    else:
        card = make_card(spread_bert_dir, pooling="mean", normalize=True, similarity="cosine")
    ours = our_ndcg10(card, tmp_path)
    assert ours > 0.0
    theirs = mteb_ndcg10(MaebenchEncoder(card, device="cpu"))
    assert ours == pytest.approx(theirs, abs=1e-4)


def test_mteb_search_protocol_agrees_for_bm25(tmp_path):
    card = get_card("bm25", REPO / "models")
    assert our_ndcg10(card, tmp_path) == pytest.approx(mteb_ndcg10(MaebenchSearch(card)), abs=1e-4)


def test_export_is_readable_by_mteb_and_imports_back_as_reported(tmp_path):
    from mteb.results import TaskResult

    from benchmark.results.mteb_files import export_results, import_mteb
    from benchmark.results.reported import parse_reported

    card = get_card("bm25", REPO / "models")
    tiny = read_result(our_path := run_task(card, get_task("tiny"), RunOptions(tmp_path / "r")))
    with pytest.raises(Exception, match="no MTEB counterpart"):
        export_results([tiny], tmp_path / "out")
    # pretend the same numbers were on SciFact (an MTEB task) to exercise the format
    scifact = tiny.model_copy(update={"task": tiny.task.model_copy(update={"name": "scifact"})})
    (path,) = export_results([scifact], tmp_path / "out")
    assert path.relative_to(tmp_path / "out").parts == ("maebench__bm25", "no_revision_available",
                                                        "SciFact.json")
    loaded = TaskResult.from_disk(path)
    assert loaded.task_name == "SciFact"
    assert loaded.get_score() == pytest.approx(tiny.metrics["nDCG@10"])

    text = import_mteb([path], "bm25", None, {"kind": "results-repo", "title": "t"})
    cells = {c.metric: c for c in parse_reported(text, "imported").cells}
    assert set(cells) == {"nDCG@10", "MRR@10", "R@100", "R@1000", "MAP@100"}
    assert cells["nDCG@10"].task == "scifact" and cells["nDCG@10"].split == "test"
    assert cells["nDCG@10"].value == pytest.approx(tiny.metrics["nDCG@10"], abs=1e-6)
    assert our_path.exists()

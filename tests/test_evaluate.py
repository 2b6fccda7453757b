"""Canonical tie-breaking makes ranx agree exactly with pytrec_eval (trec_eval's tie order)."""

from __future__ import annotations

import pytest

from benchmark.evaluation.metrics import Metric, canonical_ranking, canonicalize, drop_identical_ids, evaluate
from tests.helpers.results import random_qrels_and_run

PYTREC_MEASURES = {
    "nDCG@10": "ndcg_cut_10",
    "R@100": "recall_100",
    "MAP@100": "map_cut_100",
}


def pytrec(qrels, run, measures, relevance_level=1):
    pytrec_eval = pytest.importorskip("pytrec_eval")
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, set(measures), relevance_level=relevance_level)
    return evaluator.evaluate(run)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranx_after_canonical_ties_equals_pytrec_eval(seed):
    qrels, run = random_qrels_and_run(seed)
    ours = evaluate(qrels, run, ("nDCG@10", "R@100", "MAP@100", "MRR@10"))
    theirs = pytrec(qrels, run, set(PYTREC_MEASURES.values()))
    for metric, measure in PYTREC_MEASURES.items():
        for qid in qrels:
            assert ours.per_query[metric][qid] == pytest.approx(theirs[qid][measure], abs=1e-12)
    # MRR@10: pytrec_eval's recip_rank has no cutoff, so give it the run truncated to 10.
    top10 = {q: dict(canonical_ranking(docs, 10)) for q, docs in run.items()}
    rr = pytrec(qrels, top10, {"recip_rank"})
    for qid in qrels:
        assert ours.per_query["MRR@10"][qid] == pytest.approx(rr[qid]["recip_rank"], abs=1e-12)


def test_relevance_threshold_matches_pytrec_relevance_level():
    qrels, run = random_qrels_and_run(5)
    ours = evaluate(qrels, run, ("R@100", "MAP@100"), relevance_threshold=2)
    theirs = pytrec(qrels, run, {"recall_100", "map_cut_100"}, relevance_level=2)
    for qid in qrels:
        if not any(g >= 2 for g in qrels[qid].values()):
            continue  # pytrec_eval and ranx disagree only on queries with nothing relevant
        assert ours.per_query["R@100"][qid] == pytest.approx(theirs[qid]["recall_100"], abs=1e-12)
        assert ours.per_query["MAP@100"][qid] == pytest.approx(theirs[qid]["map_cut_100"], abs=1e-12)


def test_ties_break_by_doc_id_descending():
    ranking = canonical_ranking({"a": 1.0, "c": 1.0, "b": 1.0, "z": 0.5, "y": 2.0})
    assert [d for d, _ in ranking] == ["y", "c", "b", "a", "z"]
    # the tie order decides the metric: relevant "a" ranks 3rd of three tied docs, not 1st
    result = evaluate({"q": {"a": 1}}, {"q": {"a": 1.0, "b": 1.0, "c": 1.0}}, ("MRR@10",))
    assert result.aggregates["MRR@10"] == pytest.approx(1 / 3)


def test_queries_missing_from_run_score_zero_and_count_in_the_mean():
    result = evaluate({"q1": {"a": 1}, "q2": {"b": 1}}, {"q1": {"a": 1.0}}, ("nDCG@10",))
    assert result.per_query["nDCG@10"] == {"q1": 1.0, "q2": 0.0}
    assert result.aggregates["nDCG@10"] == 0.5


def test_drop_identical_ids_and_truncation():
    run = {"q1": {"q1": 9.0, "d1": 1.0}, "q2": {"d2": 1.0}}
    assert drop_identical_ids(run) == {"q1": {"d1": 1.0}, "q2": {"d2": 1.0}}
    assert canonicalize({"q": {"a": 3.0, "b": 2.0, "c": 1.0}}, depth=2) == {
        "q": [("a", 3.0), ("b", 2.0)]
    }


def test_metric_value_objects():
    assert str(Metric.parse("nDCG@10")) == "nDCG@10"
    assert Metric.parse("R@100").ranx_name(2) == "recall@100-l2"
    assert Metric.parse("nDCG@10").ranx_name(2) == "ndcg@10"
    for bad in ("ndcg@10", "nDCG", "nDCG@0", "R@x"):
        with pytest.raises(ValueError, match="unknown metric"):
            Metric.parse(bad)


def test_nan_scores_are_rejected():
    with pytest.raises(ValueError, match="non-numeric score"):
        canonical_ranking({"a": float("nan")})

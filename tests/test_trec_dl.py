"""TREC DL 2019/2020 and MS MARCO dev as catalog tasks, evaluated as trec_eval does (-l 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmark.catalog.tasks import get_task
from benchmark.core.errors import DataError
from benchmark.datasets.beir import load_beir_folder
from benchmark.evaluation.metrics import evaluate
from tests.helpers.paths import SHARED

MSMARCO_PASSAGE = SHARED / "data" / "msmarco-passage"
DL = {"trec-dl-2019": (43, 9260), "trec-dl-2020": (54, 11386)}


def pytrec(qrels, run, measures, relevance_level):
    pytrec_eval = pytest.importorskip("pytrec_eval")
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, set(measures), relevance_level=relevance_level)
    return evaluator.evaluate(run)


def test_catalog_entries():
    for name in DL:
        task = get_task(name)
        assert task.relevance_threshold == 2 and "trec_relevance_2" in task.quirks
        assert task.relative_path == "msmarco"  # one corpus, one stored encoding, for all three
        assert {"nDCG@10", "R@1000"} <= set(task.evaluation_metrics)
    msmarco = get_task("msmarco")
    assert msmarco.split == "dev" and {"MRR@10", "R@50", "R@1000"} <= set(msmarco.evaluation_metrics)


def _dl_folder(tmp_path: Path, name: str) -> Path:
    """data/beir/msmarco/corpus.jsonl holding every judged passage + data/msmarco-passage."""
    if not MSMARCO_PASSAGE.is_dir():
        pytest.skip(f"../shared data not found at {MSMARCO_PASSAGE}; integration test skipped")
    from benchmark.datasets.trec import load_trec_qrels

    task = get_task(name)
    qrels = load_trec_qrels(MSMARCO_PASSAGE.parent / task.trec_files.qrels)
    folder = tmp_path / "data" / "beir" / "msmarco"
    folder.mkdir(parents=True)
    docs = sorted({d for judged in qrels.values() for d in judged})
    with (folder / "corpus.jsonl").open("w") as out:
        for d in docs:
            out.write(json.dumps({"_id": d, "title": "", "text": f"passage {d}"}) + "\n")
    (tmp_path / "data" / "msmarco-passage").symlink_to(MSMARCO_PASSAGE)
    return folder


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("name", sorted(DL))
@pytest.mark.parametrize("stream", [False, True])
def test_dl_task_is_evaluated_as_trec_eval_l2(tmp_path, name, stream):
    task = get_task(name)
    dataset = load_beir_folder(task, _dl_folder(tmp_path, name), stream=stream)
    n_queries, n_judgements = DL[name]
    assert len(dataset.qrels) == n_queries == len(dataset.queries)
    assert sum(len(j) for j in dataset.qrels.values()) == n_judgements
    # every judged query has something at grade >= 2 (else recall -l 2 would be undefined)
    assert all(any(g >= 2 for g in j.values()) for j in dataset.qrels.values())

    rng = np.random.default_rng(0)
    ids = list(dataset.corpus.ids) if stream else list(dataset.corpus)
    run = {q: {ids[i]: float(rng.integers(0, 50)) for i in rng.choice(len(ids), 1200, replace=False)}
           for q in dataset.qrels}
    ours = evaluate(dataset.qrels, run, task.evaluation_metrics, task.relevance_threshold)
    from benchmark.evaluation.metrics import canonicalize

    ranked = {q: {d: float(len(r) - i) for i, (d, _) in enumerate(r)}
              for q, r in canonicalize(run, 1000).items()}
    theirs = pytrec(dataset.qrels, ranked, {"ndcg_cut_10", "recall_1000", "recall_100"}, 2)
    binary = pytrec(dataset.qrels, ranked, {"recall_1000"}, 1)
    for qid in dataset.qrels:
        assert ours.per_query["nDCG@10"][qid] == pytest.approx(theirs[qid]["ndcg_cut_10"], abs=1e-12)
        assert ours.per_query["R@1000"][qid] == pytest.approx(theirs[qid]["recall_1000"], abs=1e-12)
        assert ours.per_query["R@100"][qid] == pytest.approx(theirs[qid]["recall_100"], abs=1e-12)
    # the threshold matters: grade-1 passages would count at -l 1
    assert any(
        theirs[q]["recall_1000"] != pytest.approx(binary[q]["recall_1000"]) for q in dataset.qrels
    )


def test_missing_trec_files_is_one_line_error(tmp_path):
    folder = tmp_path / "beir" / "msmarco"
    folder.mkdir(parents=True)
    (folder / "corpus.jsonl").write_text('{"_id": "1", "text": "x"}\n')
    with pytest.raises(DataError, match="missing file msmarco-passage/trec-dl-2019"):
        load_beir_folder(get_task("trec-dl-2019"), folder)


def test_malformed_trec_qrels_line_is_named(tmp_path):
    from benchmark.datasets.trec import load_topics, load_trec_qrels

    bad = tmp_path / "qrels.txt"
    bad.write_text("1 Q0 7 2\n1 Q0 8\n")
    with pytest.raises(DataError, match=r"qrels.txt:2: expected 'qid Q0 docid grade'"):
        load_trec_qrels(bad)
    topics = tmp_path / "topics.txt"
    topics.write_bytes(b"1\tfirst\r\n2\tsecond\r\n")
    assert load_topics(topics) == {"1": "first", "2": "second"}


@pytest.mark.slow
@pytest.mark.parametrize("threshold", [1, 2])
def test_per_query_kernels_equal_ranx_evaluate(threshold):
    """evaluate() calls ranx's per-query kernels directly (fast cold start); the numbers must be
    exactly those of ranx.evaluate on the same canonical run."""
    from ranx import Qrels, Run
    from ranx import evaluate as ranx_evaluate

    from benchmark.evaluation.metrics import Metric, canonicalize
    from tests.helpers.results import random_qrels_and_run

    qrels, run = random_qrels_and_run(7)
    metrics = ("nDCG@10", "MRR@10", "R@50", "R@100", "MAP@100", "P@5")
    ours = evaluate(qrels, run, metrics, threshold)
    ranked = {q: {d: float(len(r) - i) for i, (d, _) in enumerate(r)}
              for q, r in canonicalize(run).items()}
    names = [Metric.parse(m).ranx_name(threshold) for m in metrics]
    theirs = ranx_evaluate(Qrels(qrels), Run(ranked), names, return_mean=False, threads=1)
    qids = sorted(qrels)
    for metric, name in zip(metrics, names, strict=True):
        assert [ours.per_query[metric][q] for q in qids] == pytest.approx(
            list(theirs[name]), abs=1e-12), metric

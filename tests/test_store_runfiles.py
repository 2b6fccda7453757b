"""Every committed run file reproduces its result's metrics under trec_eval (pytrec_eval).

A published run is only useful if anyone re-scoring it gets the stored numbers: the file must
carry the exact scores (trec_eval re-sorts by score, ties by doc id, and ignores our ranks).
Metrics whose cutoff exceeds the stored depth (R@1000 from a top-100 file) cannot be
recomputed from the file and are skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmark.evaluation.metrics import Metric, canonical_ranking
from benchmark.results.result_store import iter_results
from benchmark.results.runfiles import decode_run, encode_run
from tests.helpers.paths import BEIR_DIR, REPO

RESULTS = Path(os.environ.get("MAEBENCH_CHECK_RESULTS", REPO / "results"))
PYTREC = {"nDCG": "ndcg_cut_{k}", "R": "recall_{k}", "MAP": "map_cut_{k}", "MRR": "recip_rank"}


def _committed() -> list[tuple[Path, object]]:
    return [(p, r) for p, r in iter_results(RESULTS) if r.run is not None]


def test_run_file_scores_round_trip_exactly():
    ranked = {"q1": [("d1", 3.7889829874038696), ("d2", 3.788982629776001), ("d3", 1e-300)]}
    assert decode_run(encode_run(ranked, 10), "x") == ranked


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize("path", [p for p, _ in _committed()], ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_run_file_rescored_by_pytrec_eval_equals_its_json(path: Path):
    pytrec_eval = pytest.importorskip("pytrec_eval")
    from benchmark.catalog.tasks import get_task
    from benchmark.datasets.beir import load_qrels
    from benchmark.results.result_store import read_result, read_run

    result = read_result(path)
    task = get_task(result.task.name)
    qrels_file = BEIR_DIR / task.relative_path / "qrels" / f"{task.split}.tsv"
    if not qrels_file.is_file():
        pytest.skip(f"../shared qrels not found at {qrels_file}")
    qrels = load_qrels(qrels_file)
    run = read_run(path, result)
    assert set(result.per_query["nDCG@10"]) == set(qrels)
    for name, value in result.metrics.items():
        metric = Metric.parse(name)
        if metric.cutoff > result.run.depth:
            continue
        measure = PYTREC[metric.measure].format(k=metric.cutoff)
        # pytrec_eval sorts the scores itself; only recip_rank (no cutoff) needs the top 10
        depth = metric.cutoff if metric.measure == "MRR" else None
        scored = {q: dict(canonical_ranking(dict(docs), depth)) for q, docs in run.items()}
        evaluator = pytrec_eval.RelevanceEvaluator(
            qrels, {measure}, relevance_level=result.task.relevance_threshold
        )
        theirs = evaluator.evaluate({q: d for q, d in scored.items() if d})
        # trec_eval averages over the queries it saw; ours over every judged query (0 if absent)
        mean = sum(theirs.get(q, {}).get(measure, 0.0) for q in qrels) / len(qrels)
        assert mean == pytest.approx(value, abs=1e-9), f"{path}: {name}"

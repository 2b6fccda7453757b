"""Aggregate tasks (CQADupStack): the score is the unweighted mean of the subtasks' scores."""

from __future__ import annotations

import shutil

import pytest

import benchmark.pipeline.runner as runner
from benchmark.catalog.registry import get_card
from benchmark.catalog.tasks import TaskSpec
from benchmark.core.errors import ResultError
from benchmark.core.paths import EMBEDDED_DATA_DIR
from benchmark.pipeline.runner import RunOptions, run_task
from benchmark.results.result_store import read_result


@pytest.fixture
def forum_tasks(tmp_path, monkeypatch):
    """Two 'forums' (copies of the tiny task, one with fewer judged queries) and their mean."""
    data = tmp_path / "data"
    for forum in ("a", "b"):
        shutil.copytree(EMBEDDED_DATA_DIR / "tiny", data / "agg" / forum)
    qrels = data / "agg" / "b" / "qrels" / "test.tsv"
    lines = qrels.read_text().splitlines()
    qrels.write_text("\n".join(lines[:8]) + "\n")  # forum b: only the first judged queries
    tasks = {
        "agg-a": TaskSpec(name="agg-a", display_name="a", domain="x", path="agg/a", part_of="agg"),
        "agg-b": TaskSpec(name="agg-b", display_name="b", domain="x", path="agg/b", part_of="agg"),
    }
    tasks["agg"] = TaskSpec(name="agg", display_name="agg", domain="x",
                            quirks=("mean_of_subtasks",), subtasks=("agg-a", "agg-b"))
    monkeypatch.setattr(runner, "get_task", tasks.__getitem__)
    return tasks, data


@pytest.mark.slow
def test_mean_of_subtasks_with_prefixed_per_query_scores(forum_tasks, results_dir):
    tasks, data = forum_tasks
    options = RunOptions(results_dir=results_dir, data_dir=data)
    result = read_result(run_task(get_card("bm25"), tasks["agg"], options))
    a = read_result(results_dir / "bm25" / "agg-a.json")
    b = read_result(results_dir / "bm25" / "agg-b.json")
    assert a.task.n_queries != b.task.n_queries
    for metric in result.metrics:
        assert result.metrics[metric] == pytest.approx((a.metrics[metric] + b.metrics[metric]) / 2)
    assert len(result.per_query["nDCG@10"]) == a.task.n_queries + b.task.n_queries
    assert all(k.startswith(("agg-a/", "agg-b/")) for k in result.per_query["nDCG@10"])
    assert result.task.subtasks == ["agg-a", "agg-b"] and result.run is None


def test_stored_subtasks_are_reused_only_with_the_same_configuration(forum_tasks, results_dir):
    tasks, data = forum_tasks
    options = RunOptions(results_dir=results_dir, data_dir=data)
    run_task(get_card("bm25"), tasks["agg-a"], options)
    stored = (results_dir / "bm25" / "agg-a.json").read_bytes()
    run_task(get_card("bm25"), tasks["agg"], options)
    assert (results_dir / "bm25" / "agg-a.json").read_bytes() == stored  # reused, not rerun
    (results_dir / "bm25" / "agg.json").unlink()
    raw = (results_dir / "bm25" / "agg-b.json").read_text().replace('"k1": 1.5', '"k1": 0.9')
    (results_dir / "bm25" / "agg-b.json").write_text(raw)
    with pytest.raises(ResultError, match="another configuration of bm25"):
        run_task(get_card("bm25"), tasks["agg"], options)


def test_same_config_fills_defaults_of_fields_added_later():
    from benchmark.results.identity import same_config
    from benchmark.results.schema import ModelInfo

    current = ModelInfo.from_card(get_card("bm25")).config
    older = {k: v for k, v in current.items() if k != "implementation"}  # defaulted field
    assert same_config(older, current)
    assert not same_config({**current, "k1": 0.9}, current)
    assert not same_config({**current, "unknown_field": 1}, current)

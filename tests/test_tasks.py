"""The task catalog: complete, validated, and consistent with mteb's own metadata."""

from __future__ import annotations

import pytest

from benchmark.catalog.tasks import QUIRKS, Catalog, all_tasks, get_task
from benchmark.core.errors import MaebenchError

BEIR_18 = {
    "trec-covid", "nfcorpus", "nq", "hotpotqa", "fiqa", "arguana", "webis-touche2020",
    "cqadupstack", "quora", "dbpedia-entity", "scidocs", "fever", "climate-fever", "scifact",
    "bioasq", "signal1m", "trec-news", "robust04",
}


def test_catalog_has_the_18_beir_tasks_and_msmarco_dev():
    names = {t.name for t in all_tasks()}
    assert names >= BEIR_18
    assert get_task("msmarco").split == "dev"
    assert all(get_task(n).split == "test" for n in BEIR_18)
    assert all(get_task(n).main_metric == "nDCG@10" for n in BEIR_18 | {"msmarco"})


def test_quirks_from_design_are_recorded():
    assert "drop_identical_ids" in get_task("arguana").quirks
    assert "drop_identical_ids" in get_task("quora").quirks
    assert "touche_v2_qrels" in get_task("webis-touche2020").quirks
    assert "graded_relevance" in get_task("nfcorpus").quirks
    cqa = get_task("cqadupstack")
    assert cqa.is_aggregate and len(cqa.subtasks) == 12
    assert all(get_task(s).part_of == "cqadupstack" for s in cqa.subtasks)
    assert {q for t in all_tasks() for q in t.quirks} <= set(QUIRKS)


def test_unknown_task_is_one_clear_line():
    with pytest.raises(MaebenchError, match="unknown task 'scifakt'") as info:
        get_task("scifakt")
    assert "\n" not in str(info.value)


def test_catalog_rejects_unknown_keys_and_bad_subtasks():
    base = {"schema_version": 1, "beir_url": "x"}
    with pytest.raises(ValueError, match="extra"):
        Catalog.model_validate(
            {**base, "tasks": [{"name": "a", "display_name": "A", "domain": "d", "splt": "test"}]}
        )
    with pytest.raises(ValueError, match="unknown subtask"):
        Catalog.model_validate({**base, "tasks": [{
            "name": "a", "display_name": "A", "domain": "d",
            "quirks": ["mean_of_subtasks"], "subtasks": ["b"],
        }]})


@pytest.mark.slow
def test_mteb_names_and_revisions_match_installed_mteb():
    mteb = pytest.importorskip("mteb")
    checked = 0
    for task in all_tasks():
        if task.mteb is None:
            continue
        meta = mteb.get_task(task.mteb.name).metadata
        assert meta.dataset["path"] == task.mteb.dataset, task.name
        assert meta.dataset["revision"] == task.mteb.revision, task.name
        assert task.split in meta.eval_splits, task.name
        checked += 1
    assert checked >= 25

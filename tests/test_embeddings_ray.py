"""The Ray engine writes the same shards as the local one (skips when ray is not installed)."""

from __future__ import annotations

import gzip

import pytest

from benchmark.catalog.tasks import get_task
from benchmark.pipeline.runner import RunOptions, run_task
from benchmark.results.result_store import read_result, run_path
from benchmark.retrievers.options import StoreOptions
from tests.helpers.cards import dense_card as _card


@pytest.fixture(autouse=True)
def _ray():
    """Skip without ray[data]; imported when the test runs, not at collection."""
    pytest.importorskip("ray", reason="ray not installed: pip install 'maebench[ray]' to run")
    pytest.importorskip("ray.data", reason="ray[data] not installed: pip install 'maebench[ray]'")


@pytest.fixture
def spread_bert(tmp_path_factory, tiny_texts):
    from tests.helpers.checkpoints import tiny_bert

    return tiny_bert(tmp_path_factory.mktemp("spread"), tiny_texts, initializer_range=1.0)


@pytest.mark.slow
def test_two_ray_workers_give_the_local_engine_run_file_byte_for_byte(
    spread_bert, tmp_path, monkeypatch
):
    from benchmark.retrievers import options as options_module

    # several shards, so that two actors really split the work
    monkeypatch.setattr(options_module, "MAX_SHARD_ROWS", 1000)
    monkeypatch.setattr("benchmark.datasets.stream.GRANULE", 1)
    monkeypatch.setattr("benchmark.retrievers.dense.GRANULE", 1)
    monkeypatch.setattr("benchmark.retrievers.dense.shard_rows", lambda dim, mem, granule: 4)
    card = _card(spread_bert)
    results = {}
    for engine in ("local", "ray"):
        options = RunOptions(
            results_dir=tmp_path / engine, device="cpu",
            store=StoreOptions(root=tmp_path / f"store-{engine}", engine=engine,
                               ray_workers=2 if engine == "ray" else None,
                               backend="torch"),  # Ray actors encode with torch
        )
        results[engine] = read_result(run_task(card, get_task("tiny"), options))
    stats = results["ray"].provenance.runtime["embedding_store"]
    assert stats["engine"] == "ray" and stats["shards_total"] > 2
    assert stats["shards_encoded"] == stats["shards_total"]
    local_run, ray_run = (
        gzip.decompress(run_path(tmp_path / e / "tiny-dense" / "tiny.json").read_bytes())
        for e in ("local", "ray")
    )
    assert local_run == ray_run
    local_store, ray_store = tmp_path / "store-local", tmp_path / "store-ray"
    entry = stats["entry"]
    for shard in sorted((local_store / entry).glob("shard-*.npy")):
        assert shard.read_bytes() == (ray_store / entry / shard.name).read_bytes()

"""`maebench store ls | du | rm` and the dense run's use of the store, end to end on tiny data."""

from __future__ import annotations

import gzip

import pytest
from typer.testing import CliRunner

from benchmark.catalog.tasks import get_task
from benchmark.cli import app
from benchmark.core.errors import MaebenchError
from benchmark.pipeline.runner import RunOptions, run_task
from benchmark.results.result_store import read_result, run_path
from benchmark.retrievers.options import StoreOptions
from tests.helpers.cards import dense_card as _card


@pytest.fixture
def spread_bert(tmp_path_factory, tiny_texts):
    from tests.helpers.checkpoints import tiny_bert

    return tiny_bert(tmp_path_factory.mktemp("spread"), tiny_texts, initializer_range=1.0)


def _run(card, tmp_path, name, **store):
    options = RunOptions(results_dir=tmp_path / name, device="cpu",
                         store=StoreOptions(root=tmp_path / "store", **store))
    return read_result(run_task(card, get_task("tiny"), options))


def _run_bytes(tmp_path, name) -> bytes:
    path = run_path(tmp_path / name / "tiny-dense" / "tiny.json")
    return gzip.decompress(path.read_bytes())


@pytest.mark.slow
def test_second_run_reads_the_store_and_gives_the_same_bytes(spread_bert, tmp_path):
    card = _card(spread_bert)
    cold = _run(card, tmp_path, "cold")
    warm = _run(card, tmp_path, "warm")
    assert cold.provenance.runtime["embedding_store"]["shards_encoded"] == 1
    assert warm.provenance.runtime["embedding_store"]["shards_from_store"] == 1
    assert warm.provenance.runtime["embedding_store"]["shards_encoded"] == 0
    assert "encode_corpus" not in warm.provenance.timings
    assert warm.provenance.runtime["device"].startswith("none")  # the model was never loaded
    no_store = _run(card, tmp_path, "plain", use_store=False)
    assert _run_bytes(tmp_path, "cold") == _run_bytes(tmp_path, "warm") == _run_bytes(tmp_path, "plain")
    assert cold.metrics == warm.metrics == no_store.metrics
    half = _run(card, tmp_path, "half", store_dtype="float16")
    assert half.provenance.runtime["embedding_store"]["store_dtype"] == "float16"
    assert half.provenance.runtime["embedding_store"]["entry"] != cold.provenance.runtime[
        "embedding_store"]["entry"]


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_search_is_labelled_with_its_recall(spread_bert, tmp_path, kind):
    result = _run(_card(spread_bert), tmp_path, kind, search=kind)
    label = result.provenance.runtime["search"]
    assert label["kind"] == "approximate" and label["method"] == kind
    recall = next(v for k, v in label.items() if k.startswith("recall@"))
    assert 0.0 < recall <= 1.0 and label["recall_sample_queries"] > 0
    exact = _run(_card(spread_bert), tmp_path, "exact")
    assert exact.provenance.runtime["search"] == {"kind": "exact"}


def test_store_ls_du_rm(spread_bert, tmp_path):
    _run(_card(spread_bert), tmp_path, "cold")
    cli = CliRunner()
    root = ["--root", str(tmp_path / "store")]
    listed = cli.invoke(app, ["store", "ls", *root])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.strip().splitlines()[1:]
    assert sorted(line.split("\t")[1] for line in lines) == ["passage", "query"]
    assert all(line.split("\t")[2] == "1/1" for line in lines)
    du = cli.invoke(app, ["store", "du", *root])
    assert "2 entries (2 complete)" in du.output
    refused = cli.invoke(app, ["store", "rm", "--all", *root])
    assert isinstance(refused.exception, MaebenchError) and "--yes" in str(refused.exception)
    entry = lines[0].split("\t")[0]
    removed = cli.invoke(app, ["store", "rm", entry[:8], *root])
    assert removed.exit_code == 0 and "removed 1 entries" in removed.output
    assert "1 entries" in cli.invoke(app, ["store", "du", *root]).output
    assert cli.invoke(app, ["store", "rm", "--all", "--yes", *root]).exit_code == 0
    assert "(empty" in cli.invoke(app, ["store", "ls", *root]).output


def test_a_corrupt_stored_shard_is_encoded_again_not_used(spread_bert, tmp_path):
    card = _card(spread_bert)
    cold = _run(card, tmp_path, "cold")
    entry = cold.provenance.runtime["embedding_store"]["entry"]
    shard = tmp_path / "store" / entry / "shard-000000.npy"
    data = bytearray(shard.read_bytes())
    data[-4:] = b"\x00\x00\x80\x7f"  # the last float becomes +inf: the checksum catches it
    shard.write_bytes(bytes(data))
    again = _run(card, tmp_path, "again")
    stats = again.provenance.runtime["embedding_store"]
    assert stats["shards_dropped_corrupt"] == 1 and stats["shards_encoded"] == 1
    assert _run_bytes(tmp_path, "cold") == _run_bytes(tmp_path, "again")

"""An interrupted corpus encode keeps its finished parts, and the same command resumes from them:
a real encode (tiny random BERT, the embedded tiny task, parts of a few rows) stopped by a real
SIGINT, then run again, encodes only the rest and writes the same run file, byte for byte, as a
run that was never interrupted (and as the pre-checkpoint path, the run without the store)."""

from __future__ import annotations

import gzip
import json
import signal
import sys
from pathlib import Path

import pytest

from benchmark.catalog.tasks import get_task
from benchmark.pipeline.runner import RunOptions, run_task
from benchmark.results.result_store import read_result, run_path
from benchmark.retrievers.backends.torch_backend import HFEncoder
from benchmark.retrievers.options import StoreOptions
from tests.helpers.cards import dense_card as _base_card

N_DOCS = 80  # the embedded tiny corpus
REAL_ENCODE = HFEncoder.encode


@pytest.fixture(scope="module")
def spread_bert(tmp_path_factory, tiny_texts):
    from tests.helpers.checkpoints import tiny_bert

    return tiny_bert(tmp_path_factory.mktemp("spread"), tiny_texts, initializer_range=1.0)


def _card(checkpoint, batch_size: int = 4):
    card = _base_card(checkpoint)
    return card.model_copy(update={"retriever": card.retriever.model_copy(
        update={"batch_size": batch_size})})


class Encodes:
    """Counts the corpus texts each encode call gets; raises a real SIGINT in call `stop_at`."""

    def __init__(self, monkeypatch, stop_at: int | None = None) -> None:
        self.rows: list[int] = []
        self.stop_at = stop_at
        real = REAL_ENCODE
        counter = self

        def encode(encoder, texts, max_length, batch_size, desc="encode"):
            if desc == "corpus":
                counter.rows.append(len(texts))
                if counter.stop_at is not None and len(counter.rows) == counter.stop_at:
                    signal.raise_signal(signal.SIGINT)  # KeyboardInterrupt, as a Ctrl-C gives
            return real(encoder, texts, max_length, batch_size, desc)

        monkeypatch.setattr(HFEncoder, "encode", encode)


def _run(card, root: Path, name: str, use_store: bool = True):
    options = RunOptions(results_dir=root / name, device="cpu",
                         store=StoreOptions(root=root / "store", use_store=use_store,
                                            backend="torch"))
    return run_task(card, get_task("tiny"), options)


def _run_bytes(path: Path) -> bytes:
    return gzip.decompress(run_path(path).read_bytes())


@pytest.fixture(autouse=True)
def _real_sigint():
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.slow
def test_interrupted_encode_resumes_with_only_the_rest_and_the_same_bytes(
    spread_bert, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("MAEBENCH_CHECKPOINT_ROWS", "8")  # 2 batches of 4: ten parts
    monkeypatch.setattr("os.cpu_count", lambda: 2)  # 2 batches per call wherever this runs
    card = _card(spread_bert)
    reference = _run(card, tmp_path / "a", "results")
    legacy = _run(card, tmp_path / "plain", "results", use_store=False)  # one encode call

    calls = Encodes(monkeypatch, stop_at=4)
    with pytest.raises(KeyboardInterrupt) as stopped:
        _run(card, tmp_path / "b", "results")
    assert str(stopped.value) == (
        "interrupted: 3 of 10 shards (24 of 80 passages) kept in the embedding store; "
        "the same command resumes from there")
    assert calls.rows == [8, 8, 8, 8]
    assert not (tmp_path / "b" / "results" / "tiny-dense").exists()
    capsys.readouterr()

    calls = Encodes(monkeypatch)
    resumed = _run(card, tmp_path / "b", "results")
    assert "resuming: 3 of 10 shards stored (24 of 80 passages); encoding the rest" in (
        capsys.readouterr().err)
    assert sum(calls.rows) == N_DOCS - 24  # only the rest was encoded
    stats = read_result(resumed).provenance.runtime["embedding_store"]
    assert stats["shards_encoded"] == 1 and stats["shards_total"] == 1
    assert _run_bytes(resumed) == _run_bytes(reference) == _run_bytes(legacy)
    entry = stats["entry"]
    shard_a, shard_b = (tmp_path / d / "store" / entry / "shard-000000.npy" for d in "ab")
    assert shard_a.read_bytes() == shard_b.read_bytes()
    assert not list((tmp_path / "b" / "store" / entry).glob("part-*"))  # folded into the shard
    manifest = json.loads((tmp_path / "b" / "store" / entry / "manifest.json").read_text())
    assert "parts" not in manifest


@pytest.mark.slow
def test_a_one_batch_call_gets_a_neighbour_and_the_same_bits(spread_bert, tmp_path, monkeypatch):
    """Parts of one batch: each call encodes that batch beside its neighbour (a lone batch would
    run on all torch threads, the others on one each), and the vectors do not change."""
    monkeypatch.setenv("MAEBENCH_CHECKPOINT_ROWS", "4")
    card = _card(spread_bert)
    reference = _run(card, tmp_path / "plain", "results", use_store=False)
    calls = Encodes(monkeypatch)
    parts = _run(card, tmp_path / "parts", "results")
    assert calls.rows == [8] * 20
    assert _run_bytes(parts) == _run_bytes(reference)


@pytest.mark.slow
def test_parts_of_another_batch_size_or_damaged_are_encoded_again(
    spread_bert, tmp_path, monkeypatch
):
    monkeypatch.setenv("MAEBENCH_CHECKPOINT_ROWS", "8")
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    card = _card(spread_bert)
    Encodes(monkeypatch, stop_at=3)
    with pytest.raises(KeyboardInterrupt):
        _run(card, tmp_path, "first")
    folder = next((tmp_path / "store").glob("*/part-000000-0000.npy")).parent
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["parts"]["batch_size"] == 4 and manifest["parts"]["part_rows"] == 8
    assert [r["file"] for r in manifest["parts"]["shards"]["0"]] == [
        "part-000000-0000.npy", "part-000000-0001.npy"]

    (folder / "part-000000-0001.npy").write_bytes(b"damaged")  # the second part is not used
    calls = Encodes(monkeypatch)
    _run(card, tmp_path, "second")
    assert sum(calls.rows) == N_DOCS - 8

    # parts formed by batches of 8 are never mixed into a run whose batches are 4 (the batch
    # size is not part of the store key: the same entry, its old parts dropped unused)
    Encodes(monkeypatch, stop_at=3)
    with pytest.raises(KeyboardInterrupt):
        _run(_card(spread_bert, batch_size=8), tmp_path / "x", "first")
    moved = next((tmp_path / "x" / "store").glob("*/manifest.json"))
    assert json.loads(moved.read_text())["parts"]["batch_size"] == 8
    calls = Encodes(monkeypatch)
    _run(_card(spread_bert, batch_size=4), tmp_path / "x", "second")
    assert sum(calls.rows) == N_DOCS
    assert not list(moved.parent.glob("part-*"))


def test_an_entry_written_before_parts_existed_is_read_as_before(spread_bert, tmp_path):
    """A manifest with no "parts" section (every store on disk before this change): its shards
    are used, nothing is encoded."""
    card = _card(spread_bert)
    first = _run(card, tmp_path, "first")
    entry = read_result(first).provenance.runtime["embedding_store"]["entry"]
    manifest = tmp_path / "store" / entry / "manifest.json"
    data = json.loads(manifest.read_text())
    assert set(data) == {"key", "rows", "shards_total", "dim", "dtype", "shards"}
    again = read_result(_run(card, tmp_path, "again")).provenance.runtime["embedding_store"]
    assert again["shards_from_store"] == 1 and again["shards_encoded"] == 0


def test_checkpoint_settings_are_checked(monkeypatch):
    from benchmark.core.errors import MaebenchError
    from benchmark.retrievers.dense import CheckpointPolicy

    monkeypatch.setenv("MAEBENCH_CHECKPOINT_SECONDS", "soon")
    with pytest.raises(MaebenchError, match="MAEBENCH_CHECKPOINT_SECONDS='soon': expected a positive"):
        CheckpointPolicy.from_env()
    monkeypatch.setenv("MAEBENCH_CHECKPOINT_SECONDS", "0.5")
    assert CheckpointPolicy.from_env().seconds == 0.5


@pytest.mark.slow
def test_ctrl_c_on_the_command_line_is_one_line_and_the_rerun_resumes(
    spread_bert, tmp_path, monkeypatch, capsys
):
    """`maebench run` stopped by SIGINT mid-encode prints one line saying what was kept (exit
    130, no traceback); the same command again says it resumes and matches an uninterrupted run."""
    from benchmark.cli import main

    monkeypatch.setenv("MAEBENCH_CHECKPOINT_ROWS", "16")
    monkeypatch.setattr("os.cpu_count", lambda: 2)

    def cli(home: str, results: str) -> tuple[int, str]:
        monkeypatch.setenv("MAEBENCH_HOME", str(tmp_path / home))
        monkeypatch.setattr(sys, "argv", [
            "maebench", "run", "--model", str(spread_bert), "--name", "tiny-cf", "--task", "tiny",
            "--pooling", "mean", "--normalize", "--similarity", "cosine", "--query-prefix", "",
            "--passage-prefix", "", "--max-length", "64", "--title", "prepend",
            "--backend", "torch", "--device", "cpu", "--results-dir", str(tmp_path / results)])
        code = 0
        try:
            main()
        except SystemExit as exit_:
            code = exit_.code or 0
        return code, capsys.readouterr().err

    code, err = cli("home-ref", "ref")
    assert code == 0, err
    Encodes(monkeypatch, stop_at=3)  # batches of 16 (the CPU cap), parts of 16: 5 parts
    code, err = cli("home", "results")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 130 and "Traceback" not in err
    assert lines[-1] == (
        "error: interrupted: 2 of 5 shards (32 of 80 passages) kept in the embedding store; "
        "the same command resumes from there; results/ keeps what was stored before")
    assert sum("interrupted" in line for line in lines) == 1
    calls = Encodes(monkeypatch)
    code, err = cli("home", "results")
    assert code == 0, err
    assert "resuming: 2 of 5 shards stored (32 of 80 passages); encoding the rest" in err
    assert sum(calls.rows) == 2 * 48  # the rest: 3 one-batch parts, each beside a neighbour
    ref, resumed = (tmp_path / d / "tiny-cf" / "tiny.json" for d in ("ref", "results"))
    assert _run_bytes(ref) == _run_bytes(resumed)


def test_stopped_before_the_first_part_starts_over_and_says_so(
    spread_bert, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("MAEBENCH_CHECKPOINT_ROWS", "8")
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    card = _card(spread_bert)
    Encodes(monkeypatch, stop_at=1)
    with pytest.raises(KeyboardInterrupt) as stopped:
        _run(card, tmp_path, "results")
    assert str(stopped.value) == ("interrupted: no shard was finished, nothing kept; the same "
                                  "command starts over")
    capsys.readouterr()
    calls = Encodes(monkeypatch)
    _run(card, tmp_path, "results")
    assert "starting over: none stored" in capsys.readouterr().err
    assert sum(calls.rows) == N_DOCS

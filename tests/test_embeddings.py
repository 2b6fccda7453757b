"""The embedding store: keys, crash-safe shard commits, corrupt shards, streamed corpora."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from benchmark.core.errors import DataError
from benchmark.datasets.beir import load_corpus
from benchmark.datasets.stream import GRANULE, scan_corpus
from benchmark.embeddings.embedding_store import EmbeddingStore, StoreError
from benchmark.embeddings.key import StoreKey, folder_digest, texts_fingerprint
from benchmark.retrievers.options import parse_size, shard_rows

BASE = dict(
    role="passage", weights="sha256:" + "a" * 64, encoder="shared", pooling="cls", head=(),
    normalize=False, similarity="dot", prefix="", title="prepend", title_separator=" ",
    max_length=512, model_dtype="float32", store_dtype="float32", texts="c" * 64, shard_rows=1000,
)

CHANGES = {
    "role": "query", "weights": "hub:x/y@abc", "encoder": "t5", "pooling": "mean",
    "head": ("dense",), "normalize": True, "similarity": "cosine", "prefix": "passage: ",
    "title": "none", "title_separator": " | ", "max_length": 256, "model_dtype": "float16",
    "store_dtype": "float16", "dupmae": (1.0, 8), "texts": "d" * 64, "shard_rows": 2000,
    "backend": "openvino",
}


def test_every_field_changes_the_key():
    base = StoreKey(**BASE).digest()
    assert set(CHANGES) | {"format"} == set(StoreKey.model_fields)
    digests = {field: StoreKey(**(BASE | {field: value})).digest() for field, value in CHANGES.items()}
    assert base not in digests.values()
    assert len(set(digests.values())) == len(CHANGES)


def test_query_and_passage_never_share_an_entry(tmp_path):
    """Identical texts encoded in both roles (mteb PR #5379) land in different folders."""
    store = EmbeddingStore(tmp_path)
    passage = store.entry(StoreKey(**BASE), 3, 1)
    query = store.entry(StoreKey(**(BASE | {"role": "query"})), 3, 1)
    assert passage.folder != query.folder
    with passage.writing():
        passage.write(0, np.ones((3, 4), dtype=np.float32))
    assert query.load(0, 3) is None


def test_folder_digest_sees_every_file_and_is_cached(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights")
    (folder / "vocab.txt").write_text("a\nb\n")
    cache = tmp_path / "cache.json"
    first = folder_digest(folder, cache)
    assert folder_digest(folder, cache) == first and cache.is_file()
    (folder / "vocab.txt").write_text("a\nc\n")  # a tokenizer change changes vectors too
    assert folder_digest(folder, cache) != first


def test_texts_fingerprint_depends_on_chosen_ids():
    assert texts_fingerprint("f") == "f"
    assert texts_fingerprint("f", ["1", "2"]) != texts_fingerprint("f", ["2", "1"])


def _vectors(i: int, rows: int = 5) -> np.ndarray:
    return np.random.default_rng(i).standard_normal((rows, 4)).astype(np.float32)


def _fill(store: EmbeddingStore, key: StoreKey, shards: range) -> None:
    entry = store.entry(key, 15, 3)
    with entry.writing():
        for i in shards:
            entry.write(i, _vectors(i))


@pytest.mark.parametrize("step", ["shard temp", "shard rename", "manifest temp", "manifest rename"])
def test_crash_in_each_write_step_loses_at_most_that_shard(tmp_path, monkeypatch, step):
    store, key = EmbeddingStore(tmp_path), StoreKey(**BASE)
    _fill(store, key, range(1))  # shard 0 committed before the crash

    import benchmark.embeddings.embedding_store as store_module

    real_replace, real_open = os.replace, Path.open
    calls = {"n": 0}

    def crash(message):
        raise KeyboardInterrupt(message)  # stands for kill -9: nothing after it runs

    def replace(src, dst):
        calls["n"] += 1
        if (step == "shard rename" and calls["n"] == 1) or (step == "manifest rename" and calls["n"] == 2):
            crash(step)
        return real_replace(src, dst)

    def opener(self, mode="r", *args, **kwargs):
        handle = real_open(self, mode, *args, **kwargs)
        is_tmp = self.name.endswith(".tmp") and "w" in mode
        if is_tmp and ((step == "shard temp" and ".shard-" in self.name)
                       or (step == "manifest temp" and ".manifest" in self.name)):
            handle.write(b"partial")
            handle.close()
            crash(step)
        return handle

    monkeypatch.setattr(store_module.os, "replace", replace)
    monkeypatch.setattr(Path, "open", opener)
    entry = store.entry(key, 15, 3)
    with pytest.raises(KeyboardInterrupt), entry.writing():
        entry.write(1, _vectors(1))
    monkeypatch.undo()

    reopened = store.entry(key, 15, 3)
    assert reopened.missing() == [1, 2]  # the old manifest stands: shard 1 was in flight
    # after the shard's rename its file exists, but unrecorded it is never read
    renamed = step not in ("shard temp", "shard rename")
    assert (reopened.folder / "shard-000001.npy").exists() == renamed
    np.testing.assert_array_equal(reopened.load(0, 5), _vectors(0))
    with reopened.writing():  # resume: only the missing shards are written, leftovers cleaned
        assert not list(reopened.folder.glob(".*.tmp"))
        for i in reopened.missing():
            reopened.write(i, _vectors(i))
    final = store.entry(key, 15, 3)
    assert final.complete
    for i in range(3):
        np.testing.assert_array_equal(final.load(i, 5), _vectors(i))


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "foreign"])
def test_corrupt_or_foreign_shards_are_dropped_not_used(tmp_path, damage):
    store, key = EmbeddingStore(tmp_path), StoreKey(**BASE)
    _fill(store, key, range(3))
    entry = store.entry(key, 15, 3)
    shard = entry.folder / "shard-000001.npy"
    if damage == "flip":
        data = bytearray(shard.read_bytes())
        data[-1] ^= 0xFF
        shard.write_bytes(bytes(data))
    elif damage == "truncate":
        shard.write_bytes(shard.read_bytes()[:40])
    elif damage == "delete":
        shard.unlink()
    else:  # another entry's valid shard copied in
        other = EmbeddingStore(tmp_path).entry(StoreKey(**(BASE | {"texts": "e" * 64})), 15, 3)
        with other.writing():
            other.write(1, _vectors(99))
        shard.write_bytes((other.folder / "shard-000001.npy").read_bytes())
    with entry.writing():
        assert entry.load(1, 5) is None
        assert entry.missing() == [1] and entry.dropped == [1]
    assert store.entry(key, 15, 3).missing() == [1]  # the manifest forgot it on disk too
    np.testing.assert_array_equal(entry.load(0, 5), _vectors(0))


def test_manifest_of_another_key_or_size_is_not_trusted(tmp_path):
    store, key = EmbeddingStore(tmp_path), StoreKey(**BASE)
    _fill(store, key, range(3))
    assert store.entry(key, 16, 3).missing() == [0, 1, 2]
    manifest = store.entry(key, 15, 3).folder / "manifest.json"
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps(data | {"key": "0" * 64}))
    assert store.entry(key, 15, 3).missing() == [0, 1, 2]
    manifest.write_text("{not json")
    assert store.entry(key, 15, 3).missing() == [0, 1, 2]


def test_float16_store_halves_the_bytes_and_reads_back_fp32(tmp_path):
    store = EmbeddingStore(tmp_path)
    wide, half = StoreKey(**BASE), StoreKey(**(BASE | {"store_dtype": "float16"}))
    vectors = _vectors(0, rows=1000)
    for key in (wide, half):
        entry = store.entry(key, 1000, 1)
        with entry.writing():
            entry.write(0, vectors)
    got = store.entry(half, 1000, 1).load(0, 1000)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, vectors.astype(np.float16).astype(np.float32))
    ratio = store.entry(half, 1000, 1).nbytes() / store.entry(wide, 1000, 1).nbytes()
    assert 0.45 < ratio < 0.55


def test_a_second_writer_is_refused(tmp_path):
    store, key = EmbeddingStore(tmp_path), StoreKey(**BASE)
    entry = store.entry(key, 15, 3)
    with entry.writing(), pytest.raises(StoreError, match="another process"):
        store.entry(key, 15, 3).__enter__()


def _write_corpus(path: Path, n: int, dupe_at: int | None = None) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for i in range(n):
            doc_id = "d0" if dupe_at == i else f"d{i}"
            handle.write(json.dumps({"_id": doc_id, "title": f"t{i}", "text": f"text {i} é"}) + "\n")
            if i == 3:
                handle.write("\n")  # blank lines are skipped, as load_corpus does


def test_streamed_corpus_reads_the_same_documents_as_load_corpus(tmp_path):
    path = tmp_path / "corpus.jsonl"
    _write_corpus(path, 2 * GRANULE + 17)
    streamed = scan_corpus(path, judged=["d5", "missing"])
    loaded = load_corpus(path)
    assert list(streamed.ids) == list(loaded) and len(streamed) == len(loaded)
    assert streamed.judged_present == {"d5"}
    docs = [d for start, n in streamed.shards(GRANULE) for d in streamed.read(start, n)]
    assert docs == list(loaded.values())
    assert streamed.ids.nbytes() < 20 * len(loaded)


def test_streamed_corpus_refuses_duplicates_and_bad_lines(tmp_path):
    path = tmp_path / "corpus.jsonl"
    _write_corpus(path, 10, dupe_at=7)
    with pytest.raises(DataError, match="duplicate document id 'd0'"):
        scan_corpus(path)
    path.write_text('{"_id": "a", "text": "x"}\n{"_id": "b"}\n')
    with pytest.raises(DataError, match=r"corpus.jsonl:2: missing field 'text'"):
        scan_corpus(path)
    path.write_bytes(b'{"_id": "a", "text": "\xff"}\n')
    with pytest.raises(DataError, match="not valid UTF-8"):
        scan_corpus(path)


def test_sizes_and_shard_rows():
    assert parse_size("8GB") == 8 << 30 and parse_size("512MiB") == 512 << 20
    assert shard_rows(384, 8 << 30, GRANULE) == 100_000
    assert shard_rows(30_000, 8 << 30, GRANULE) == 8000  # DupMAE-wide vectors: smaller shards
    assert shard_rows(768, 256 << 20, GRANULE) == 10_000

"""Hostile and damaged stored files (issue 19): every path a stored file names stays in its own
tree (benchmark.core.paths.confine), names are full matches, files are read bounded and regular only;
embedding-store manifests, `store rm` and results-store journals built on top of them."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from benchmark.core.paths import (
    UnsafePathError,
    check_name,
    confine,
    is_name,
    load_json_bounded,
    read_bounded,
)
from benchmark.embeddings.embedding_store import EmbeddingStore, StoreError
from benchmark.embeddings.key import StoreKey

# --------------------------------------------------------------------------- the helpers


def test_names_are_full_matches():
    assert is_name("bm25") and is_name("a.b-c_d") and is_name("x" * 80)
    for bad in ("x\n", "x\r", "\nx", "X", "-x", ".x", "a/b", "..", "", "x" * 81, "x\x00", 5, None):
        assert not is_name(bad), bad
    with pytest.raises(UnsafePathError, match=r"'x\\n'"):  # repr: the message stays one line
        check_name("x\n", "--name")


def test_confine_keeps_paths_in_their_tree(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "f").write_text("x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "out-link").symlink_to(outside)
    (root / "in-link").symlink_to(root / "sub")
    assert confine(root, "sub/f", "file") == root / "sub" / "f"
    assert confine(root, str(root / "sub" / "f"), "file") == root / "sub" / "f"
    assert confine(root, "in-link/f", "file") == root / "in-link" / "f"
    assert confine(root, "", "folder", allow_root=True) == root
    for bad in ("../outside", "sub/../../outside", str(outside), "/etc/passwd", "out-link",
                "out-link/x", "", ".", "a\x00b"):
        with pytest.raises(UnsafePathError):
            confine(root, bad, "file")
    for bad in (5, None, ["sub"]):
        with pytest.raises(UnsafePathError, match="not a path"):
            confine(root, bad, "file")
    # a hub snapshot links its files into ../../blobs: allowed only when the caller says so
    snapshot = tmp_path / "models--o--m" / "snapshots" / "abc"
    blobs = tmp_path / "models--o--m" / "blobs"
    snapshot.mkdir(parents=True)
    blobs.mkdir()
    (blobs / "123").write_text("{}")
    (snapshot / "config.json").symlink_to(blobs / "123")
    with pytest.raises(UnsafePathError):
        confine(snapshot, "config.json", "file")
    assert confine(snapshot, "config.json", "file", link_root=snapshot.parents[1]).is_file()


def test_read_bounded_refuses_devices_fifos_and_big_files(tmp_path):
    small = tmp_path / "small.json"
    small.write_text('{"a": 1}')
    assert read_bounded(small, 100, "file") == b'{"a": 1}'
    assert load_json_bounded(small, 100, "file") == {"a": 1}
    with pytest.raises(UnsafePathError, match="larger than 4 bytes"):
        read_bounded(small, 4, "file")
    with pytest.raises(UnsafePathError, match="not a regular file"):
        read_bounded(Path("/dev/zero"), 1 << 20, "file")
    with pytest.raises(UnsafePathError, match="not a regular file"):
        read_bounded(tmp_path, 1 << 20, "file")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    done = []
    worker = threading.Thread(target=lambda: done.append(_refused(read_bounded, fifo)), daemon=True)
    worker.start()
    worker.join(10)
    assert done == [True], "reading a FIFO must not wait for a writer"
    with pytest.raises(UnsafePathError, match="cannot read"):
        read_bounded(tmp_path / "missing", 10, "file")
    for text in ("NaN", "[" * 100_000 + "]" * 100_000, "{"):
        small.write_text(text)
        with pytest.raises(UnsafePathError, match="not valid JSON"):
            load_json_bounded(small, 1 << 20, "file")
    small.write_bytes(b"\xff\xfe")
    with pytest.raises(UnsafePathError, match="not UTF-8"):
        load_json_bounded(small, 1 << 20, "file")


def _refused(function, path) -> bool:
    try:
        function(path, 1 << 20, "file")
    except UnsafePathError:
        return True
    return False


# --------------------------------------------------------------------------- embedding store

KEY = StoreKey(
    role="passage", weights="sha256:" + "a" * 64, encoder="shared", pooling="cls", head=(),
    normalize=False, similarity="dot", prefix="", title="prepend", title_separator=" ",
    max_length=512, model_dtype="float32", store_dtype="float32", texts="c" * 64, shard_rows=1000,
)


def _vectors(i: int) -> np.ndarray:
    return np.random.default_rng(i).standard_normal((5, 4)).astype(np.float32)


def _filled(tmp_path) -> tuple[EmbeddingStore, Path]:
    store = EmbeddingStore(tmp_path / "store")
    entry = store.entry(KEY, 15, 3)
    with entry.writing():
        for i in range(3):
            entry.write(i, _vectors(i))
    return store, entry.folder / "manifest.json"


def _edit(manifest: Path, change) -> None:
    data = json.loads(manifest.read_text())
    change(data)
    manifest.write_text(json.dumps(data))


def test_swapped_manifest_records_are_encoded_again_never_read(tmp_path):
    store, manifest = _filled(tmp_path)

    def swap(data):
        data["shards"]["0"], data["shards"]["1"] = data["shards"]["1"], data["shards"]["0"]

    _edit(manifest, swap)
    entry = store.entry(KEY, 15, 3)
    assert entry.missing() == [0, 1]  # both records name the other shard's file
    assert entry.load(0, 5) is None and entry.load(1, 5) is None
    assert np.array_equal(entry.load(2, 5), _vectors(2))
    with entry.writing():
        for i in entry.missing():
            entry.write(i, _vectors(i))
    again = store.entry(KEY, 15, 3)
    assert again.complete and all(np.array_equal(again.load(i, 5), _vectors(i)) for i in range(3))


@pytest.mark.parametrize("damage", [
    "absolute", "dotdot", "symlink-out", "not-a-string", "extra-field", "rows-bool", "bad-sha",
    "index-out-of-range", "index-text", "record-list",
])
def test_a_damaged_record_loses_only_its_shard(tmp_path, damage):
    store, manifest = _filled(tmp_path)
    folder = manifest.parent
    outside = tmp_path / "outside.npy"
    outside.write_bytes((folder / "shard-000000.npy").read_bytes())  # same bytes, same sha256
    if damage == "symlink-out":  # the record is right, the file is a link out of the entry
        (folder / "shard-000000.npy").unlink()
        (folder / "shard-000000.npy").symlink_to(outside)
    changes = {
        "absolute": lambda d: d["shards"]["0"].update(file=str(outside)),
        "dotdot": lambda d: d["shards"]["0"].update(file="../../outside.npy"),
        "symlink-out": lambda d: None,
        "not-a-string": lambda d: d["shards"]["0"].update(file=5),
        "extra-field": lambda d: d["shards"]["0"].update(extra=1),
        "rows-bool": lambda d: d["shards"]["0"].update(rows=True),
        "bad-sha": lambda d: d["shards"]["0"].update(sha256="x"),
        "index-out-of-range": lambda d: d["shards"].update({"7": d["shards"].pop("0")}),
        "index-text": lambda d: d["shards"].update({"zero": d["shards"].pop("0")}),
        "record-list": lambda d: d["shards"].update({"0": [1, 2]}),
    }
    _edit(manifest, changes[damage])
    entry = store.entry(KEY, 15, 3)
    assert entry.load(0, 5) is None
    assert 0 in entry.missing() and entry.shards.keys() >= {1, 2}
    assert outside.read_bytes()  # never touched


@pytest.mark.parametrize("shards", ["[]", '"x"', "5", "null", '{"0": 7}'])
def test_a_manifest_of_another_shape_counts_as_empty(tmp_path, shards):
    store, manifest = _filled(tmp_path)
    _edit(manifest, lambda d: d.update(shards=json.loads(shards)))
    entry = store.entry(KEY, 15, 3)
    assert entry.missing() == [0, 1, 2]
    for text in ("[1, 2]", "not json", '{"shards": 5}', "[" * 50_000):
        manifest.write_text(text)
        assert store.entry(KEY, 15, 3).missing() == [0, 1, 2]
        assert [e.shards_done for e in store.entries()] == [0]


def test_an_entry_that_is_a_symlink_out_is_refused(tmp_path):
    store, manifest = _filled(tmp_path)
    outside = tmp_path / "victim"
    outside.mkdir()
    folder = manifest.parent
    folder.rename(tmp_path / "moved")
    folder.symlink_to(outside)
    entry = store.entry(KEY, 15, 3)
    with pytest.raises(StoreError, match="outside|symlink"), entry.writing():
        pass
    assert list(outside.iterdir()) == []


def test_store_rm_takes_entry_ids_only(tmp_path):
    store, manifest = _filled(tmp_path)
    root = store.root
    victim = root.parent / "victim-dir"
    victim.mkdir()
    (victim / "f").write_text("precious")
    for prefix in ("../victim-dir", "/tmp", "..", "", "*", "a/b", manifest.parent.name + "\n"):
        with pytest.raises(StoreError, match="not an entry id"):
            store.find(prefix)
    link = root / ("f" * 32)
    link.symlink_to(victim)
    assert store.find("f") == []  # a symlink is not an entry
    with pytest.raises(StoreError, match="not an entry"):
        store.remove(link)
    with pytest.raises(StoreError, match="not an entry"):
        store.remove(victim)
    assert sorted(p.name for p in victim.iterdir()) == ["f"]  # no .lock created in it
    (manifest.parent / ".lock").unlink()
    (manifest.parent / ".lock").symlink_to(victim / "f")
    with pytest.raises(StoreError, match="lock"):
        store.remove(manifest.parent)
    assert (victim / "f").read_text() == "precious"
    (manifest.parent / ".lock").unlink()
    assert store.remove(store.find(manifest.parent.name[:6])[0]) > 0
    assert link.is_symlink() and (victim / "f").read_text() == "precious"


# --------------------------------------------------------------------------- results-store journals


def _journal_case(tmp_path, journal: str | bytes, txn_name: str = "txn-evil"):
    from benchmark.results.result_store import ResultStore

    results = tmp_path / "results"
    txn = results / ".maebench" / txn_name
    txn.mkdir(parents=True)
    (txn / "COMMIT").write_bytes(journal.encode() if isinstance(journal, str) else journal)
    victim = tmp_path / "victim"
    (victim / "d").mkdir(parents=True)
    (victim / "a").write_text("a")
    (victim / "d" / "y").write_text("y")
    return ResultStore, results, victim


def _victim_tree(victim: Path) -> list[str]:
    return sorted(str(p.relative_to(victim)) for p in victim.rglob("*"))


@pytest.mark.parametrize("journal", [
    "not json", "[1]", '{"renames": 5}', '{"renames": [5]}', '{"renames": [["a"]]}', "",
    '{"renames": [["{victim}/a", "{victim}/moved"]], "side": "{victim}/d"}',
    '{"renames": [["{victim}/a", "{results}/bm25/tiny.json"]], "side": null}',
    '{"renames": [["{txn}/0-x", "{victim}/moved"]], "side": null}',
    '{"renames": [["{txn}/0-x", "{results}/.maebench/lock"]], "side": null}',
    '{"version": 2, "renames": [{"staged": "../../../victim/a", "tree": "results", "final": "m/x"}]}',
    '{"version": 2, "renames": [{"staged": "0-x", "tree": "results", "final": "../victim/m"}]}',
    '{"version": 2, "renames": [{"staged": "0-x", "tree": "results", "final": "{victim}/m"}]}',
    '{"version": 2, "renames": [{"staged": "0-x", "tree": "models", "final": "x.yaml"}]}',
    '{"version": 2, "models_dir": "{victim}", "renames": [{"staged": "a", "tree": "models", '
    '"final": "../a.yaml"}]}',
    '{"version": 3, "renames": []}',
])
def test_a_journal_it_did_not_write_is_quarantined_not_applied(tmp_path, journal, caplog):
    results = tmp_path / "results"
    text = journal.replace("{victim}", str(tmp_path / "victim")).replace(
        "{results}", str(results)).replace("{txn}", str(results / ".maebench" / "txn-evil"))
    store_class, results, victim = _journal_case(tmp_path, text)
    (results / ".maebench" / "txn-evil" / "0-x").write_text("staged")
    (victim / ".maebench-txn-evil").mkdir()
    (victim / ".maebench-txn-evil" / "a").write_text("a")
    before = _victim_tree(victim)
    store_class(results)  # opening the store recovers
    assert _victim_tree(victim) == before
    assert not (results / ".maebench" / "txn-evil").exists()
    quarantined = list((results / ".maebench" / "quarantine").iterdir())
    if "models_dir" in text and "../a.yaml" not in text:
        assert quarantined == []  # never reached: its side folder is absent, nothing to do
    else:
        assert [p.name for p in quarantined] == ["txn-evil"]
        assert "not applied" in caplog.text
    assert not (results / "bm25").exists() and not (results / "m").exists()


def test_a_symlinked_transaction_folder_is_never_followed(tmp_path):
    from benchmark.results.result_store import ResultStore

    results = tmp_path / "results"
    (results / ".maebench").mkdir(parents=True)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "0-tiny.json").write_text("{}")
    (victim / "COMMIT").write_text(json.dumps({"version": 2, "renames": [
        {"staged": "0-tiny.json", "tree": "results", "final": "bm25/tiny.json"}]}))
    (results / ".maebench" / "txn-link").symlink_to(victim)
    ResultStore(results)
    assert sorted(p.name for p in victim.iterdir()) == ["0-tiny.json", "COMMIT"]
    assert not (results / "bm25").exists()


def test_a_genuine_journal_still_rolls_forward(tmp_path):
    """A version-2 journal the store wrote, left by a kill after the commit point, and a
    version-1 one (absolute paths) from an older maebench: both are applied."""
    from benchmark.results.result_store import ResultStore

    for version in (1, 2):
        results = tmp_path / f"results{version}"
        txn = results / ".maebench" / "txn-1"
        txn.mkdir(parents=True)
        (txn / "0-tiny.json").write_text("new")
        (results / "bm25").mkdir()
        (results / "bm25" / "tiny.json").write_text("old")
        renames = ({"version": 2, "renames": [{"staged": "0-tiny.json", "tree": "results",
                                               "final": "bm25/tiny.json"}], "models_dir": None}
                   if version == 2 else
                   {"renames": [[str(txn / "0-tiny.json"), str(results / "bm25" / "tiny.json")]],
                    "side": None})
        (txn / "COMMIT").write_text(json.dumps(renames))
        ResultStore(results)
        assert (results / "bm25" / "tiny.json").read_text() == "new"
        assert not txn.exists() and not (results / ".maebench" / "quarantine").exists()


def test_claim_locks_never_follow_a_symlink(tmp_path):
    from benchmark.core.errors import ResultError
    from benchmark.results.result_store import ResultStore

    results = tmp_path / "results"
    claims = results / ".maebench" / "claims"
    claims.mkdir(parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (claims / "bm25--tiny.lock").symlink_to(victim)
    with pytest.raises(ResultError), ResultStore(results).claim("bm25", "tiny", overwrite=True):
        pass
    assert victim.read_text() == "precious"


def test_store_ls_shows_key_text_escaped(tmp_path):
    """key.json is read from disk: a newline or a terminal escape in it is printed escaped."""
    from typer.testing import CliRunner

    from benchmark.cli import app

    store, manifest = _filled(tmp_path)
    key = manifest.parent / "key.json"
    data = json.loads(key.read_text())
    data.update(role="passage\nINJECTED", weights="\x1b]0;title\x07evil")
    key.write_text(json.dumps(data))
    out = CliRunner().invoke(app, ["store", "ls", "--root", str(store.root)]).output
    assert "\nINJECTED" not in out and "\x1b" not in out and "\\n" in out
    assert len(out.strip().splitlines()) == 2  # the header and one entry

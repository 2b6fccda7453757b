"""Hostile and damaged OpenVINO conversion cache (issue 27, class 2), and the backend
calibration cache beside it (issue 26): read on every default CPU run, so nothing in either may
hang a run (a FIFO as meta.json or as the entry itself), crash it (meta.json with a list as
`files` or `failure`) or be followed out of the cache (links). A damaged entry is rebuilt and
the run gives the same vectors and run file as a clean one.

One clean cache is converted once per module (a tiny random BERT) and copied into each test's
fresh $MAEBENCH_HOME before it is damaged, so each case pays one rebuild at most.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from benchmark.retrievers.backends import calibration, measurement, openvino_cache
from benchmark.retrievers.dense import DenseRetriever
from tests.helpers import checkpoints
from tests.helpers.cards import make_card
from tests.helpers.checkpoints import TEXTS

pytest.importorskip("openvino")

SECONDS = 60  # far above a tiny rebuild; a FIFO opened for reading would wait forever


def _openvino_faster(*args, **kwargs):
    """The measurement, pinned: these tests are about the caches, not about which is faster."""
    return ({"openvino": 2000.0, "torch": 1000.0}, {"openvino": [0.1], "torch": [0.2]},
            {"openvino": [0.2], "torch": [0.4]}, 200)


@pytest.fixture(scope="module")
def card(tmp_path_factory, tiny_texts):
    return make_card(checkpoints.tiny_bert(tmp_path_factory.mktemp("spread"), tiny_texts,
                                           initializer_range=0.3))


@pytest.fixture(scope="module")
def clean(tmp_path_factory, card):
    """A home whose cache holds the converted model and its calibration, and the vectors and
    run file of a clean run."""
    from benchmark.catalog.tasks import get_task
    from benchmark.pipeline.runner import RunOptions, run_task
    from benchmark.retrievers.options import StoreOptions

    base = tmp_path_factory.mktemp("clean")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MAEBENCH_HOME", str(base / "home"))
        mp.delenv("MAEBENCH_BACKEND", raising=False)
        mp.setattr(measurement, "measure_backends", _openvino_faster)
        retriever = DenseRetriever(card.retriever, device="cpu")
        assert retriever.describe()["backend"] == "openvino"
        vectors = retriever.encode_queries(TEXTS)
        options = RunOptions(results_dir=base / "results", device="cpu",
                             store=StoreOptions(root=base / "store"))
        run = _run_file(run_task(card, get_task("tiny"), options))
    return {"home": base / "home", "vectors": vectors, "run": run}


def _run_file(path: Path) -> str:
    """The stored result's run (top-k per query) digest: equal digests, equal run files."""
    from benchmark.results.result_store import read_result

    result = read_result(path)
    assert result.run is not None
    return result.run.sha256


@pytest.fixture
def home(tmp_path, monkeypatch, clean):
    """A copy of the clean home, for this test to damage."""
    target = tmp_path / "home"
    shutil.copytree(clean["home"], target, symlinks=True)
    monkeypatch.setenv("MAEBENCH_HOME", str(target))
    monkeypatch.delenv("MAEBENCH_BACKEND", raising=False)
    monkeypatch.setattr(measurement, "measure_backends", _openvino_faster)
    return target


def _entry(home: Path) -> Path:
    entries = [p for p in (home / "openvino" / "models").iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1
    return entries[0]


def _within(seconds: float, function):
    """function() in a worker thread, failing the test if it takes longer (a FIFO read would
    block forever; the thread is a daemon, and the FIFO is opened for writing below to free it)."""
    outcome: dict = {}

    def work() -> None:
        try:
            outcome["value"] = function()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            outcome["error"] = exc

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        pytest.fail(f"blocked for more than {seconds} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _release(path: Path) -> None:
    """Unblock a reader stuck on a FIFO (a failed test must not leave a thread waiting)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
    except OSError:
        pass


def _rebuilt_and_equal(card, clean) -> dict:
    retriever = _within(SECONDS, lambda: DenseRetriever(card.retriever, device="cpu"))
    info = retriever.describe()
    assert info["backend"] == "openvino" and info["openvino"]["cache"] == "converted"
    assert info["openvino"]["rebuilt_because"]
    np.testing.assert_array_equal(retriever.encode_queries(TEXTS), clean["vectors"])
    again = DenseRetriever(card.retriever, device="cpu").describe()["openvino"]
    assert again["cache"] == "hit"  # the rebuilt entry is sound
    return info


# ------------------------------------------------------------------------ FIFOs and links


@pytest.mark.slow
def test_a_fifo_as_meta_json_is_refused_at_once_and_the_entry_rebuilt(card, clean, home):
    meta = _entry(home) / "meta.json"
    meta.unlink()
    os.mkfifo(meta)
    try:
        # the cheap look-up every default run makes before loading anything
        assert _within(5, lambda: openvino_cache.recorded_failure(
            next(iter(DenseRetriever(card.retriever, device="cpu", lazy=True)._weights.values())),
            card.retriever, "passage")) is None
        _rebuilt_and_equal(card, clean)
    finally:
        _release(meta)


@pytest.mark.slow
def test_a_fifo_as_the_entry_itself_is_replaced(card, clean, home):
    entry = _entry(home)
    shutil.rmtree(entry)
    os.mkfifo(entry)
    try:
        _rebuilt_and_equal(card, clean)
        assert _entry(home).is_dir() and not _entry(home).is_symlink()
    finally:
        _release(entry)


@pytest.mark.slow
def test_a_fifo_as_a_model_file_or_a_stale_temporary_folder_does_not_block(card, clean, home):
    entry = _entry(home)
    (entry / "model.bin").unlink()
    os.mkfifo(entry / "model.bin")
    stale = entry.parent / f".{entry.name}.999999999.tmp"  # a dead process's temporary name
    os.mkfifo(stale)
    try:
        _rebuilt_and_equal(card, clean)
        assert not os.path.lexists(stale)
    finally:
        _release(stale)


@pytest.mark.slow
@pytest.mark.parametrize("what", ["fifo-blob", "link-blob", "blobs-fifo", "blobs-link"])
def test_openvino_s_blob_cache_never_blocks_or_leads_out(card, clean, home, tmp_path, what):
    """OpenVINO itself opens `<hash>.blob` for reading: a FIFO there hung the run."""
    blobs = home / "openvino" / "blobs"
    outside = tmp_path / "outside"
    outside.mkdir()
    names = [p.name for p in blobs.iterdir()]
    assert names
    if what.startswith("blobs-"):
        shutil.rmtree(blobs)
        if what == "blobs-fifo":
            os.mkfifo(blobs)
        else:
            blobs.symlink_to(outside, target_is_directory=True)
    else:
        for name in names:
            (blobs / name).unlink()
            if what == "fifo-blob":
                os.mkfifo(blobs / name)
            else:
                (outside / name).write_bytes(b"not a blob")
                (blobs / name).symlink_to(outside / name)
    try:
        retriever = _within(SECONDS, lambda: DenseRetriever(card.retriever, device="cpu"))
        assert retriever.describe()["openvino"]["cache"] == "hit"
        np.testing.assert_array_equal(retriever.encode_queries(TEXTS), clean["vectors"])
        assert blobs.is_dir() and not blobs.is_symlink()
        assert all(p.is_file() and not p.is_symlink() for p in blobs.iterdir())
        assert [p.read_bytes() for p in outside.iterdir()] == (
            [b"not a blob"] * len(names) if what == "link-blob" else [])
    finally:
        for name in names:
            _release(blobs / name)


@pytest.mark.slow
@pytest.mark.parametrize("what", ["openvino", "models"])
def test_a_fifo_in_place_of_the_cache_folders_is_replaced(card, clean, home, what):
    folder = home / "openvino" if what == "openvino" else home / "openvino" / "models"
    shutil.rmtree(folder)
    os.mkfifo(folder)
    try:
        retriever = _within(SECONDS, lambda: DenseRetriever(card.retriever, device="cpu"))
        assert retriever.describe()["openvino"]["cache"] == "converted"
        np.testing.assert_array_equal(retriever.encode_queries(TEXTS), clean["vectors"])
        assert folder.is_dir()
    finally:
        _release(folder)


@pytest.mark.slow
def test_an_entry_that_is_a_link_is_not_followed_and_its_target_is_left_alone(card, clean, home,
                                                                              tmp_path):
    entry = _entry(home)
    outside = tmp_path / "outside"
    shutil.copytree(entry, outside)  # a sound copy: only being a link is wrong with it
    before = {p.name: p.read_bytes() for p in outside.iterdir()}
    shutil.rmtree(entry)
    entry.symlink_to(outside, target_is_directory=True)
    _rebuilt_and_equal(card, clean)
    assert not _entry(home).is_symlink()
    assert {p.name: p.read_bytes() for p in outside.iterdir()} == before


def _digest_of(entry: Path) -> str:
    return json.loads((entry / "meta.json").read_text())["digest"]


def _lookups_refuse(card, entry: Path, digest: str) -> None:
    """The entry reads as absent (so it is rebuilt), at once and without an exception, both
    where a run looks it up before loading anything and where the backend loads it."""
    weights = DenseRetriever(card.retriever, device="cpu", lazy=True)._weights["passage"]
    assert _within(5, lambda: openvino_cache.read_meta(entry, digest)) is None
    assert _within(5, lambda: openvino_cache.recorded_failure(
        weights, card.retriever, "passage")) is None


@pytest.mark.parametrize("what", ["meta.json", "model.xml"])
def test_a_link_inside_an_entry_is_refused_and_not_followed(card, home, tmp_path, what):
    entry = _entry(home)
    digest = _digest_of(entry)
    target = tmp_path / what
    shutil.copy(entry / what, target)
    before = target.read_bytes()
    (entry / what).unlink()
    (entry / what).symlink_to(target)
    if what == "meta.json":
        _lookups_refuse(card, entry, digest)
    else:
        meta = openvino_cache.read_meta(entry, digest)
        assert openvino_cache.damage(entry, meta) == "model.xml is not a regular file"
    assert target.read_bytes() == before


# ------------------------------------------------------------------------ damaged metadata


def _edit_meta(entry: Path, change) -> None:
    meta = json.loads((entry / "meta.json").read_text())
    change(meta)
    (entry / "meta.json").write_text(json.dumps(meta))


META_DAMAGE = {
    "files-list": lambda m: m.update(files=["model.xml", "model.bin"]),
    "failure-list": lambda m: m.update(failure=["conversion failed"]),
    "failure-dict": lambda m: m.update(failure={"reason": 1}),
    "failure-and-files": lambda m: m.update(failure="made up"),
    "files-digest-not-hex": lambda m: m["files"].update({"model.bin": "z" * 64}),
    "files-digest-int": lambda m: m["files"].update({"model.bin": 5}),
    "files-extra": lambda m: m["files"].update({"../x": "0" * 64}),
    "digest-int": lambda m: m.update(digest=5),
    "key-forged": lambda m: m["key"].update(weights="hub:other@main"),
    "key-list": lambda m: m.update(key=[]),
    "parity-list": lambda m: m.update(parity=[1, 2]),
    "parity-string-number": lambda m: m["parity"].update(max_abs_diff_normalised="1e-7"),
    "parity-passed-string": lambda m: m["parity"].update(passed="yes"),
    "conversion-seconds-string": lambda m: m.update(conversion_seconds="3"),
    "conversion-seconds-nan": lambda m: m.update(conversion_seconds=float("nan")),
    "conversion-seconds-inf": lambda m: m.update(conversion_seconds=float("inf")),
    "created-list": lambda m: m.update(created=[]),
}


@pytest.mark.slow
@pytest.mark.parametrize("damage", sorted(META_DAMAGE))
def test_meta_json_with_wrong_types_reads_as_damaged_not_an_internal_error(card, home, damage):
    entry = _entry(home)
    digest = _digest_of(entry)
    _edit_meta(entry, META_DAMAGE[damage])
    _lookups_refuse(card, entry, digest)


@pytest.mark.parametrize("text", ["[]", "null", '"x"', "{", "NaN", "[" * 50_000 + "]" * 50_000,
                                  "x" * (2 << 20), "\xff\xfe"])
def test_meta_json_that_is_not_a_valid_object_reads_as_damaged(card, home, text):
    entry = _entry(home)
    digest = _digest_of(entry)
    (entry / "meta.json").write_text(text, encoding="latin-1")
    _lookups_refuse(card, entry, digest)


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["files-list", "failure-list"])
def test_meta_json_with_a_list_as_files_or_failure_is_rebuilt(card, clean, home, damage):
    """The two cases issue 27 found as `internal error`, end to end: rebuilt, same vectors."""
    _edit_meta(_entry(home), META_DAMAGE[damage])
    _rebuilt_and_equal(card, clean)


@pytest.mark.slow
def test_a_run_from_a_damaged_cache_gives_the_run_file_of_a_clean_run(card, clean, home,
                                                                      tmp_path):
    from benchmark.catalog.tasks import get_task
    from benchmark.pipeline.runner import RunOptions, run_task
    from benchmark.retrievers.options import StoreOptions

    entry = _entry(home)
    _edit_meta(entry, META_DAMAGE["failure-list"])
    (entry / "model.xml").unlink()
    os.mkfifo(entry / "model.xml")
    options = RunOptions(results_dir=tmp_path / "results", device="cpu",
                         store=StoreOptions(root=tmp_path / "store"))
    run = _within(SECONDS * 2, lambda: _run_file(run_task(card, get_task("tiny"), options)))
    assert run == clean["run"]


# ------------------------------------------------------------------------ the calibration cache


def _calibration(home: Path) -> Path:
    files = list((home / "openvino" / "calibration").glob("*.json"))
    assert len(files) == 1
    return files[0]


def _measured_again(card, monkeypatch) -> bool:
    calls = []

    def counting(*args, **kwargs):
        calls.append(1)
        return _openvino_faster()

    monkeypatch.setattr(measurement, "measure_backends", counting)
    retriever = _within(SECONDS, lambda: DenseRetriever(card.retriever, device="cpu"))
    facts = retriever.describe()["openvino"]
    assert facts["cache"] == "hit" and facts["calibration"]["choice"] == "openvino"
    assert facts["calibration"]["measured_now"] == bool(calls)
    return bool(calls)


def test_a_sound_calibration_is_read_not_measured_again(card, home, monkeypatch):
    assert not _measured_again(card, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["fifo", "link", "folder", "not-json", "choice-list",
                                    "speeds-string", "choice-not-the-faster", "nan", "negative",
                                    "other-key", "huge"])
def test_a_damaged_calibration_is_measured_again(card, home, monkeypatch, tmp_path, damage):
    path = _calibration(home)
    record = json.loads(path.read_text())
    path.unlink()
    if damage == "fifo":
        os.mkfifo(path)
    elif damage == "link":
        (tmp_path / "target.json").write_text(json.dumps(record))
        path.symlink_to(tmp_path / "target.json")
    elif damage == "folder":
        path.mkdir()
    elif damage == "not-json":
        path.write_text("{")
    elif damage == "huge":
        path.write_text(" " * (calibration.CALIBRATION_LIMIT + 1) + json.dumps(record))
    else:
        if damage == "choice-list":
            record["choice"] = ["openvino"]
        elif damage == "speeds-string":
            record["tokens_per_second"]["torch"] = "1000"
        elif damage == "choice-not-the-faster":
            record["choice"] = "torch"  # forged: torch measured slower
        elif damage == "nan":
            record["tokens_per_second"]["torch"] = float("nan")
        elif damage == "negative":
            record["tokens_per_second"]["torch"] = -1.0
        elif damage == "other-key":
            record["key"]["machine"]["cpu"] = "another CPU"
        path.write_text(json.dumps(record))
    try:
        assert _measured_again(card, monkeypatch)
        assert calibration.read_calibration(json.loads(_calibration(home).read_text())["key"])
        if damage == "link":
            assert json.loads((tmp_path / "target.json").read_text()) == record  # untouched
    finally:
        if damage == "fifo" and path.exists() and not path.is_file():
            _release(path)

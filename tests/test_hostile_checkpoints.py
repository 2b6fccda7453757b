"""Hostile checkpoint folders (issue 19): sentence-transformers files of the wrong shape, module
paths out of the folder, pickles, checkpoint text that would add keys to a drafted card, and
files that are not regular files. Each is one ModelLoadError / MaebenchError line."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import threading
from pathlib import Path

import pytest
import yaml

from benchmark.core.errors import MaebenchError, ModelLoadError
from tests.helpers.checkpoints import ST_MODULES, make_st


@pytest.fixture
def st_dir(tiny_bert_dir, tmp_path) -> Path:
    return make_st(Path(shutil.copytree(tiny_bert_dir, tmp_path / "ckpt")))


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch /nonexistent-maebench-pwned",))


# --------------------------------------------------------------------------- card new


def test_checkpoint_text_never_adds_keys_to_a_drafted_card(st_dir):
    from benchmark.catalog.cardfree import card_yaml, infer

    (st_dir / "config_sentence_transformers.json").write_text(json.dumps(
        {"similarity_fn_name": "x\nlocal_package: os\nlicense: evil\u2028name: evil"}))
    (st_dir / "1_Pooling" / "config.json").write_text(json.dumps(
        {"pooling_mode_mean_tokens": True, "pooling_mode_x\nlocal_package: os": True}))
    settings, st = infer(str(st_dir), {})
    text = card_yaml(str(st_dir), "drafted", settings, st, "contrastive", "x\n  local_package: os")
    card = yaml.safe_load(text)
    assert set(card) == {"name", "display_name", "family", "description", "source", "retriever"}
    assert "local_package" not in card["retriever"] and card["name"] == "drafted"
    assert card["description"] == "x\n  local_package: os"  # kept, as one escaped value
    assert "x\\nlocal_package: os" in text  # the checkpoint's text stays in a comment, escaped


def test_a_folder_name_with_a_newline_stays_in_its_comment(tiny_bert_dir, tmp_path):
    from benchmark.catalog.cardfree import card_yaml, infer

    folder = make_st(Path(shutil.copytree(tiny_bert_dir, tmp_path / "a\nlicense: evil")))
    settings, st = infer(str(folder), {})
    card = yaml.safe_load(card_yaml(str(folder), "drafted", settings, st))
    assert "license" not in card and card["retriever"]["checkpoint"] == str(folder)


@pytest.mark.parametrize("name", ["x\n", "X", "../x", "a/b", ""])
def test_card_new_refuses_names_that_are_not_names(st_dir, name):
    from benchmark.catalog.cardfree import card_yaml, infer

    settings, st = infer(str(st_dir), {})
    with pytest.raises(MaebenchError, match="invalid --name"):
        card_yaml(str(st_dir), name, settings, st)


# --------------------------------------------------------------------------- hostile ST files


HOSTILE = {
    "modules-object": ("modules.json", '{"a": 1}', "modules.json is not a list"),
    "modules-ints": ("modules.json", "[1, 2]", "entry 0 is not an object"),
    "modules-type-int": ("modules.json", '[{"type": 5, "path": "x"}]', "entry 0"),
    "modules-path-list": ("modules.json", '[{"type": "x.Pooling", "path": ["a"]}]', "entry 0"),
    "modules-absolute": ("modules.json", '[{"type": "x.Pooling", "path": "/etc"}]', "outside|absolute"),
    "modules-dotdot": ("modules.json", '[{"type": "x.Pooling", "path": "../../x"}]', r"\.\."),
    "modules-not-json": ("modules.json", "[{", "not valid JSON"),
    "modules-nan": ("modules.json", "[NaN]", "not valid JSON"),
    "sbert-list": ("sentence_bert_config.json", "[1]", "not an object"),
    "pooling-string": ("1_Pooling/config.json", '"x"', "not an object"),
    "st-config-list": ("config_sentence_transformers.json", "[]", "not an object"),
    "prompt-list": ("config_sentence_transformers.json", '{"prompts": {"query": [1]}}', "not a string"),
    "config-list": ("config.json", "[]", "not an object"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_sentence_transformers_files_are_one_line_errors(st_dir, case):
    from benchmark.catalog.st_config import read_st_config

    file, text, match = HOSTILE[case]
    (st_dir / file).write_text(text)
    with pytest.raises(ModelLoadError, match=match) as info:
        read_st_config(str(st_dir), str(st_dir))
    assert "\n" not in str(info.value)


def test_a_module_folder_that_links_out_is_refused(st_dir, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    shutil.rmtree(st_dir / "1_Pooling")
    (st_dir / "1_Pooling").symlink_to(outside)
    from benchmark.catalog.st_config import read_st_config

    with pytest.raises(ModelLoadError, match="outside"):
        read_st_config(str(st_dir), str(st_dir))


def test_config_files_that_are_not_regular_files_are_refused_at_once(st_dir):
    from benchmark.catalog.st_config import read_st_config

    (st_dir / "sentence_bert_config.json").unlink()
    os.mkfifo(st_dir / "sentence_bert_config.json")
    outcome = []
    worker = threading.Thread(daemon=True, target=lambda: outcome.append(
        _raises(lambda: read_st_config(str(st_dir), str(st_dir)))))
    worker.start()
    worker.join(20)
    assert outcome == ["not a regular file"]


def _raises(function) -> str | None:
    try:
        function()
    except ModelLoadError as exc:
        return "not a regular file" if "not a regular file" in str(exc) else str(exc)
    return None


def _with_dense(st_dir: Path, config: dict, weights: str) -> Path:
    import torch

    modules = [*ST_MODULES[:2], {"idx": 3, "name": "3", "path": "2_Dense",
                              "type": "sentence_transformers.models.Dense"}]
    (st_dir / "modules.json").write_text(json.dumps(modules))
    (st_dir / "2_Dense").mkdir()
    (st_dir / "2_Dense" / "config.json").write_text(json.dumps(config))
    if weights == "pickle":
        (st_dir / "2_Dense" / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload()))
    else:
        torch.save({"linear.weight": torch.zeros(8, 32), "linear.bias": torch.zeros(8)},
                   st_dir / "2_Dense" / "pytorch_model.bin")
    return st_dir


@pytest.mark.parametrize("case", ["pickle", "no-in-features", "bool-size", "wrong-shape"])
def test_dense_heads_that_cannot_load_are_one_line_errors(st_dir, case):
    from benchmark.catalog.registry import DenseConfig
    from benchmark.retrievers.backends.torch_backend import load_head

    config = {"in_features": 32, "out_features": 8}
    if case == "no-in-features":
        config = {"out_features": 8}
    elif case == "bool-size":
        config = {"in_features": True, "out_features": 8}
    elif case == "wrong-shape":
        config = {"in_features": 16, "out_features": 8}
    _with_dense(st_dir, config, "pickle" if case == "pickle" else "tensors")
    dense = DenseConfig.model_validate({
        "kind": "dense", "encoder": "shared", "checkpoint": str(st_dir), "pooling": "mean",
        "normalize": False, "similarity": "dot", "query_prefix": "", "passage_prefix": "",
        "query_max_length": 32, "passage_max_length": 32, "title": "prepend", "head": ["dense"],
        "dtype": "float32", "batch_size": 8})
    match = {"pickle": "pickle file", "no-in-features": "needs in_features",
             "bool-size": "needs in_features", "wrong-shape": "do not fit"}[case]
    with pytest.raises(ModelLoadError, match=match):
        load_head(str(st_dir), dense, None)
    assert not Path("/nonexistent-maebench-pwned").exists()


def test_a_pickled_model_is_refused_in_one_line(st_dir):
    from benchmark.catalog.cardfree import card_free
    from benchmark.retrievers.backends.torch_backend import HFEncoder

    (st_dir / "model.safetensors").unlink()
    (st_dir / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload()))
    card, _ = card_free(str(st_dir), "pickled", {})
    with pytest.raises(ModelLoadError, match="pickle file") as info:
        HFEncoder(str(st_dir), card.retriever, "cpu", "query")
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- import-mteb


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "folder", "huge"])
def test_import_mteb_reads_regular_files_only_and_bounded(tmp_path, kind):
    from benchmark.results.mteb_files import MAX_MTEB_FILE_BYTES, mteb_cells

    path = {"dev-zero": Path("/dev/zero"), "folder": tmp_path}.get(kind, tmp_path / "file.json")
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "huge":
        with path.open("wb") as handle:
            handle.truncate(MAX_MTEB_FILE_BYTES + 1)
    outcome = []

    def attempt():
        try:
            mteb_cells(path, "bm25", None, "x")
        except MaebenchError as exc:
            outcome.append(str(exc))

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    worker.join(20)
    assert len(outcome) == 1 and ("not a regular file" in outcome[0] or "larger" in outcome[0])

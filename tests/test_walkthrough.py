"""The README's researcher walkthrough, end to end on small data: a new checkpoint -> a card
drafted from it -> runs on two tasks (the embedded tiny task and a BEIR-format folder written
here) -> compare -> bundle -> submit --check in the producing clone -> submit in a second clone
-> the site of that clone shows the new model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from benchmark.cli import app
from benchmark.paths import EMBEDDED_DATA_DIR

REPO = Path(__file__).resolve().parents[1]
SECOND_TASK = "fiqa"  # a catalog task without catalog fingerprints: any BEIR folder can stand in


def _st_checkpoint(tiny_bert_dir: Path, folder: Path) -> Path:
    """A freshly trained checkpoint as sentence-transformers saves it (mean pooling, normalised)."""
    shutil.copytree(tiny_bert_dir, folder)
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize",
         "type": "sentence_transformers.models.Normalize"},
    ]))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True}))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128}))
    (folder / "config_sentence_transformers.json").write_text(json.dumps(
        {"similarity_fn_name": "cosine", "prompts": {"query": "query: ", "document": ""}}))
    return folder


def _beir_folder(data_dir: Path) -> Path:
    """A small BEIR-format dataset: the tiny task's documents, half of its queries."""
    folder = data_dir / SECOND_TASK
    (folder / "qrels").mkdir(parents=True)
    shutil.copy(EMBEDDED_DATA_DIR / "tiny" / "corpus.jsonl", folder / "corpus.jsonl")
    shutil.copy(EMBEDDED_DATA_DIR / "tiny" / "queries.jsonl", folder / "queries.jsonl")
    lines = (EMBEDDED_DATA_DIR / "tiny" / "qrels" / "test.tsv").read_text().splitlines()
    queries = sorted({line.split("\t")[0] for line in lines[1:]})[::2]
    kept = [line for line in lines[1:] if line.split("\t")[0] in queries]
    (folder / "qrels" / "test.tsv").write_text("\n".join([lines[0], *kept]) + "\n")
    return data_dir


def _ok(*args: str, env: dict | None = None):
    out = CliRunner().invoke(app, list(args), env=env)
    assert out.exit_code == 0, (args, out.output, out.exception)
    return out


def test_researcher_walkthrough(tiny_bert_dir, tmp_path):
    # the fresh checkpoint, under the hub id it will be published as (my-lab/my-encoder)
    weights = tmp_path / "weights"
    _st_checkpoint(tiny_bert_dir, weights / "my-lab__my-encoder")
    data = _beir_folder(tmp_path / "data")
    # this clone: a copy of the committed registry and results
    models, results = tmp_path / "models", tmp_path / "results"
    shutil.copytree(REPO / "models", models)
    shutil.copytree(REPO / "results", results)
    env = {"MAEBENCH_MODELS_DIR": str(models), "MAEBENCH_RESULTS_DIR": str(results),
           "MAEBENCH_DATA_DIR": str(data), "MAEBENCH_WEIGHTS_DIR": str(weights)}

    # 1. a card from the checkpoint's own configuration
    _ok("card", "new", "my-lab/my-encoder", "--name", "my-encoder", "--family", "contrastive",
        "--description", "A tiny encoder standing in for a fresh checkpoint.", env=env)
    card = (models / "my-encoder.yaml").read_text()
    assert "# REQUIRED (" not in card and 'query_prefix: "query: "' in card
    assert 'revision: "sha256:' in card  # pinned to its weights, as a submission must be

    # 2. runs on two tasks (and the baseline on them); a repeated run skips what is stored
    _ok("run", "--model", "my-encoder,bm25", "--task", f"tiny,{SECOND_TASK}", env=env)
    again = _ok("run", "--model", "my-encoder", "--task", f"tiny,{SECOND_TASK}", env=env)
    assert again.output.count("skip my-encoder") == 2

    # 3. compare: the given order, one-vs-baseline, within 100 columns
    cmp = _ok("compare", "--models", "my-encoder,bm25", "--baseline", "bm25", env=env)
    table_lines = [line for line in cmp.output.splitlines() if "my-encoder" in line]
    assert max(len(line) for line in cmp.output.splitlines()) <= 100
    assert all(line.split()[1] == "my-encoder" for line in table_lines if
               line.split()[0] in ("tiny", SECOND_TASK))

    # 4. a bundle, accepted by submit --check in the clone that produced it
    bundle = tmp_path / "bundle"
    _ok("bundle", "--model", "my-encoder", "--out", str(bundle), env=env)
    assert sorted(p.name for p in bundle.iterdir()) == sorted([
        "my-encoder.yaml", "tiny.json", "tiny.run.gz", f"{SECOND_TASK}.json",
        f"{SECOND_TASK}.run.gz"])
    check = _ok("submit", "--check", str(bundle), env=env)
    assert "already stored, identical" in check.output

    # 5. a second clone (the public leaderboard) takes the bundle
    clone = tmp_path / "clone"
    shutil.copytree(REPO / "models", clone / "models")
    shutil.copytree(REPO / "results", clone / "results")
    clone_env = {"MAEBENCH_MODELS_DIR": str(clone / "models"),
                 "MAEBENCH_RESULTS_DIR": str(clone / "results"), "MAEBENCH_DATA_DIR": str(data)}
    _ok("submit", "--check", str(bundle), env=clone_env)
    assert not (clone / "results" / "my-encoder").exists()
    accepted = _ok("submit", str(bundle), env=clone_env)
    assert "card models/my-encoder.yaml was added" in accepted.output
    assert (clone / "results" / "my-encoder" / f"{SECOND_TASK}.json").read_bytes() == (
        results / "my-encoder" / f"{SECOND_TASK}.json").read_bytes()

    # 6. the clone's site shows it
    site = tmp_path / "site"
    _ok("site", "--out", str(site), "--permutations", "10000", "--bootstrap", "1000",
        env=clone_env)
    index = (site / "index.html").read_text()
    assert 'data-model="my-encoder"' in index and "1/3" in index  # listed, unranked
    model_page = (site / "models" / "my-encoder.html").read_text()
    assert "A tiny encoder standing in" in model_page and SECOND_TASK in model_page
    assert (site / "tasks" / f"{SECOND_TASK}.html").is_file()
    assert (site / "tasks" / "tiny.html").is_file()  # the smoke test has its own page


@pytest.mark.parametrize("section", ["## A new checkpoint, from card to leaderboard"])
def test_readme_documents_the_walkthrough(section):
    readme = (REPO / "README.md").read_text()
    assert section in readme
    part = readme.split(section, 1)[1].split("\n## ", 1)[0]
    for command in ("maebench card new", "maebench run", "maebench compare", "maebench bundle",
                    "maebench submit --check", "maebench site", "pull request"):
        assert command in part, command
    top = readme.split("## Using it", 1)[0]
    assert top.count("```bash") == 1 and top.count("bash scripts/") == 2

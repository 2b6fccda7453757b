"""`maebench finetune` on a tiny random BERT and a made-up BEIR folder (seconds, offline).

The folder is named `scifact` so the catalog's task applies (test split for evaluation, train
split for training); its files are synthetic, so nothing here needs ../shared.
"""

from __future__ import annotations

import shutil

import pytest

from benchmark.core.errors import MaebenchError, ModelLoadError
from tests.helpers.cards import backbone_card
from tests.helpers.scifact import TEST, TINY, TRAIN, write_beir
from tests.helpers.scifact import finetune as _finetune


@pytest.fixture
def env(scifact_env):
    """The made-up scifact folder, models and tiny BERT (tests/conftest.py)."""
    return scifact_env


def test_negatives_never_include_a_judged_positive(env):
    from benchmark.catalog.registry import get_card
    from benchmark.catalog.tasks import get_task
    from benchmark.retrievers import build_retriever
    from benchmark.training.negatives import load_train_data, mine_negatives, plan_epochs

    data = load_train_data(get_task("scifact"), env["data"])
    assert data.positives["q0"] == ["d0-0", "d0-1"]
    mined = mine_negatives(build_retriever(get_card("bm25", env["models"])), data, depth=10)
    assert all(mined[q] for q in TRAIN)  # BM25 found negatives for every query
    # BM25 ranks q0's positives first: they were removed, not kept
    plan = plan_epochs(data, mined, group_size=6, epochs=3, queries_per_step=2, seed=0)
    assert len(plan) == 3 * len(TRAIN)
    for example in plan:
        positives = set(TRAIN[example.query_id][1])
        assert example.positive in positives
        assert not positives & set(example.negatives), example
        assert not positives & set(mined[example.query_id])
    # q0 cycles through both of its positives across epochs
    assert {e.positive for e in plan if e.query_id == "q0"} == {"d0-0", "d0-1"}
    # an empty pool falls back to random documents, still without positives
    fallback = plan_epochs(data, {}, group_size=4, epochs=1, queries_per_step=2, seed=1)
    for example in fallback:
        assert not set(TRAIN[example.query_id][1]) & set(example.negatives)


def test_loss_equals_a_hand_computation_on_two_queries(env):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from benchmark.training.finetune import build_loss, build_model
    from benchmark.training.recipes import load_recipe

    recipe = load_recipe("standard", {"temperature": "0.5", "query_max_length": "16",
                                      "passage_max_length": "32"})
    model = build_model(str(env["ckpt"]), recipe, "cpu")
    model.eval()  # no dropout, so the two computations see the same network
    loss_fn = build_loss(model, recipe)
    queries = ["which apple is red", "river cold"]
    positives = ["apple note the apple is red", "river note the river is cold"]
    negatives = ["castle note the castle is old", "copper note the copper is bright"]
    columns = [(queries, "query"), (positives, "document"), (negatives, "document")]
    features = [model.preprocess(texts, task=task) for texts, task in columns]
    with torch.no_grad():
        loss = float(loss_fn(features, None))

    tokenizer = AutoTokenizer.from_pretrained(env["ckpt"])
    bert = AutoModel.from_pretrained(env["ckpt"]).eval()

    def cls(texts, length):
        batch = tokenizer(texts, padding=True, truncation=True, max_length=length, return_tensors="pt")
        with torch.no_grad():
            return bert(**batch).last_hidden_state[:, 0]

    q = cls(queries, 16)
    docs = torch.cat([cls(positives, 32), cls(negatives, 32)])  # [p1, p2, n1, n2]
    logits = q @ docs.T / 0.5
    expected = float(torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])))
    assert loss == pytest.approx(expected, rel=1e-5)
    assert expected > 0.01  # not a degenerate case


@pytest.mark.slow
def test_saved_weights_load_as_a_plain_cls_encoder_with_the_trainers_vectors(env):
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    from benchmark.catalog.registry import load_card
    from benchmark.catalog.weights import weights_sha256
    from benchmark.datasets.records import Document
    from benchmark.retrievers.dense import DenseRetriever

    result = _finetune(env)
    card = load_card(result.card_path)
    assert card.finetuned_from == "tiny-backbone"
    assert card.retriever.checkpoint == "home:checkpoints/tiny-ft"
    assert card.retriever.pooling == "cls" and card.retriever.similarity == "dot"
    # standard's evaluation lengths go by task: a BEIR task (scifact) is evaluated at q 64 / p 256,
    # whatever the training lengths (16 / 32 here); the texts below are shorter than either
    assert (card.retriever.query_max_length, card.retriever.passage_max_length) == (64, 256)
    record = card.finetuning.record
    assert record.steps == 4 and record.seed == 0 and record.final_loss is not None
    assert record.resolved_recipe["group_size"] == 2 and record.overrides["lr"] == "1e-3"
    assert record.weights_sha256 == weights_sha256(result.weights_dir)
    assert card.retriever.revision == "sha256:" + record.weights_sha256
    assert not (env["home"] / "checkpoints" / "tiny-ft.partial").exists()

    docs = [Document("apple note", "the apple is red"), Document("river note", "the river is cold")]
    queries = ["which apple is red", "river cold"]
    retriever = DenseRetriever(card.retriever, device="cpu", name=card.name)
    trained = result.model.eval()
    with torch.no_grad():
        want_p = trained.encode_document(["apple note the apple is red", "river note the river is cold"],
                                         convert_to_numpy=True)
        want_q = trained.encode_query(queries, convert_to_numpy=True)
    np.testing.assert_allclose(retriever.encode_passages(docs), want_p, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(retriever.encode_queries(queries), want_q, rtol=1e-4, atol=1e-5)
    # and a plain AutoModel's [CLS] vector is the same thing
    tokenizer = AutoTokenizer.from_pretrained(result.weights_dir)
    plain = AutoModel.from_pretrained(result.weights_dir).eval()
    with torch.no_grad():
        batch = tokenizer(queries, padding=True, truncation=True, max_length=16, return_tensors="pt")
        cls = plain(**batch).last_hidden_state[:, 0].numpy()
    np.testing.assert_allclose(cls, want_q, rtol=1e-4, atol=1e-5)
    # weights replaced behind the card's back are refused at load
    shutil.copy(result.weights_dir / "model.safetensors", result.weights_dir / "model.safetensors.bak")
    (result.weights_dir / "model.safetensors").write_bytes(b"not the weights")
    (result.weights_dir / "model.safetensors.bak").unlink()
    with pytest.raises(ModelLoadError, match="sha256"):
        DenseRetriever(card.retriever, device="cpu", name=card.name)


@pytest.mark.slow
def test_same_seed_same_weights_and_resume_after_a_crash_continues(env):
    from transformers import TrainerCallback

    from benchmark.catalog.registry import load_card

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise KeyboardInterrupt("simulated kill after the step-2 checkpoint")

    class FirstStep(TrainerCallback):
        seen: list[int] = []

        def on_train_begin(self, args, state, control, **kwargs):
            FirstStep.seen.append(state.global_step)

        def on_step_begin(self, args, state, control, **kwargs):
            FirstStep.seen.append(state.global_step)

    def sha(name, seed=0, **overrides):
        card = _finetune(env, name, seed=seed, overrides={"save_steps": "100", **overrides}).card_path
        return load_card(card).finetuning.record.weights_sha256

    first, again = sha("run-a"), sha("run-b")
    assert first == again != sha("run-c", seed=1, max_steps="1")

    with pytest.raises(KeyboardInterrupt):
        _finetune(env, "run-d", callbacks=[Crash()])
    assert not (env["models"] / "run-d.yaml").exists()
    assert not (env["home"] / "checkpoints" / "run-d").exists()
    assert (env["home"] / "checkpoints" / "run-d.partial" / "stage1" / "checkpoint-2").is_dir()
    FirstStep.seen = []
    resumed = _finetune(env, "run-d", callbacks=[FirstStep()])
    assert FirstStep.seen[1] == 2  # the first step it ran was step 3, after checkpoint-2
    assert load_card(resumed.card_path).finetuning.record.weights_sha256 == first


def test_one_line_errors(env, tmp_path):
    from benchmark.catalog.registry import get_card
    from benchmark.training.finetune import FinetuneError, run_finetune
    from benchmark.training.negatives import FinetuneDataError
    from benchmark.training.recipes import RecipeError

    def check(exc_type, match, **kwargs):
        with pytest.raises(exc_type, match=match) as info:
            _finetune(env, **kwargs)
        assert "\n" not in str(info.value)
        assert isinstance(info.value, MaebenchError)

    check(RecipeError, "field lr", overrides={"lr": "fast"})
    check(RecipeError, "field group_size: Input should be greater", overrides={"group_size": "0"})
    check(RecipeError, "not a recipe field", overrides={"learning_rate": "1e-5"})
    no_train = write_beir(tmp_path / "no-train", with_train=False)
    check(FinetuneDataError, "no train split", data_dir=no_train)
    leaky = write_beir(tmp_path / "leaky", test={**TEST, "q1": TRAIN["q1"]})
    check(FinetuneDataError, "1 train queries are also judged in the 'test' split", data_dir=leaky)

    (env["models"] / "unreachable.yaml").write_text(
        backbone_card("no-such-org/no-such-model", "unreachable"))
    with pytest.raises(ModelLoadError, match="cannot load checkpoint no-such-org/no-such-model"):
        run_finetune(get_card("unreachable", env["models"]), "scifact", "standard-cpu", 0, "x", TINY,
                     env["data"], "cpu", models_dir=env["models"], progress=False)

    (env["models"] / "taken.yaml").write_text("name: taken\n")
    check(FinetuneError, "taken.yaml already exists; pass --overwrite", name="taken")


def test_out_of_memory_names_the_knob(env, monkeypatch):
    import torch
    from sentence_transformers import SentenceTransformerTrainer

    from benchmark.training.finetune import FinetuneError

    def oom(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(SentenceTransformerTrainer, "train", oom)
    with pytest.raises(FinetuneError, match="out of memory .* --set mini_batch_size=") as info:
        _finetune(env, "oom")
    assert "\n" not in str(info.value)
    assert not (env["models"] / "oom.yaml").exists()


def test_shipped_recipes_validate_and_name_every_source():
    from benchmark.training.recipes import Recipe, available_recipes, load_recipe

    names = available_recipes()
    assert {"standard", "standard-cpu", "cocondenser", "retromae", "simlm", "master"} <= set(names)
    for name in names:
        recipe = load_recipe(name)
        assert set(recipe.sources) == set(Recipe.model_fields) - {"name", "description", "sources"}
        assert all(len(s) > 5 for s in recipe.sources.values())
    standard, simlm = load_recipe("standard"), load_recipe("simlm")
    assert (standard.group_size, standard.queries_per_step, standard.lr, standard.epochs) == (16, 64, 2e-5, 3)
    assert (standard.temperature, standard.similarity, standard.pooling) == (1.0, "dot", "cls")
    assert (simlm.temperature, simlm.similarity) == (0.02, "cosine")
    overridden = load_recipe("standard", {"lr": "1e-5"})
    assert overridden.lr == 1e-5 and overridden.sources["lr"].startswith("command line")


def test_home_checkpoints_resolve_below_maebench_home(tmp_path, monkeypatch):
    from benchmark.catalog.weights import resolve_checkpoint

    monkeypatch.setenv("MAEBENCH_HOME", str(tmp_path))
    with pytest.raises(ModelLoadError, match=f"no folder {tmp_path}/checkpoints/missing"):
        resolve_checkpoint("home:checkpoints/missing")
    with pytest.raises(ModelLoadError, match="expected home:"):
        resolve_checkpoint("home:../elsewhere")
    (tmp_path / "checkpoints" / "there").mkdir(parents=True)
    assert resolve_checkpoint("home:checkpoints/there") == (str(tmp_path / "checkpoints" / "there"),
                                                            "maebench home")


@pytest.mark.slow
def test_stage_two_mines_with_the_stage_one_model_and_restarts_from_the_backbone(env):
    from benchmark.catalog.registry import load_card

    result = _finetune(env, "two-stage", overrides={"stages": "2", "stage2_mining_depth": "6",
                                                    "max_steps": "2"})
    record = load_card(result.card_path).finetuning.record
    assert record.stages == 2 and record.steps == 4  # 2 steps per stage
    assert "mined by the stage-1 model" in load_card(result.card_path).finetuning.negatives
    assert not (env["home"] / "checkpoints" / "two-stage.partial").exists()


@pytest.mark.slow
def test_cli_reports_a_bad_override_on_one_line(env):
    import os
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "benchmark.cli", "finetune", "--model", "tiny-backbone", "--task", "scifact",
         "--set", "temperature=-1", "--data-dir", str(env["data"])],
        capture_output=True, text=True, env={**os.environ}, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert proc.stderr.startswith("error: recipe standard with --set temperature=-1: field temperature")


def test_trained_checkpoints_under_a_dot_cache_home_get_distinct_store_keys(tmp_path):
    """The default MAEBENCH_HOME is ~/.cache/maebench: the embedding store's weights digest must
    read the checkpoint's files there (it once skipped them all, so two fine-tuned checkpoints
    shared one digest, the empty one, and one model's vectors would have served the other)."""
    from benchmark.embeddings.key import folder_digest

    empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    digests = []
    for name in ("a", "b"):
        folder = tmp_path / ".cache" / "maebench" / "checkpoints" / name
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(name.encode())
        digests.append(folder_digest(folder))
    assert empty not in digests and digests[0] != digests[1]

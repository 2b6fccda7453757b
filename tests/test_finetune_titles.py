"""Fine-tuning on title -> text pairs of task corpora (training.title_pairs; issue 25, item 6).

Two made-up corpora in folders named `scifact` and `nfcorpus` (so the catalog's tasks apply),
a tiny random BERT, seconds per run, offline. The folders also hold queries and qrels files that
are not JSON: a run that read them would fail, and the loaders that would read them fail too.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest

from benchmark.core.errors import MaebenchError
from benchmark.datasets.records import Document
from tests.helpers.cards import backbone_card

COLOURS = ["red", "blue", "green", "amber", "violet", "silver", "golden", "black"]
THINGS = ["apple", "river", "engine", "violin", "glacier", "tomato", "rocket", "castle", "falcon",
          "copper", "meadow", "lantern"]
FILLER = ["the", "report", "describes", "a", "study", "of", "its", "shape", "and", "history"]


def _docs(corpus: str) -> list[dict]:
    """Each document's title names a colour and a thing that its text repeats, so a title can be
    told from the other texts; plus one document of each kind the pairs skip."""
    offset = 0 if corpus == "scifact" else 4
    docs = []
    for i, thing in enumerate(THINGS):
        colour = COLOURS[(i + offset) % len(COLOURS)]
        docs.append({"_id": f"{corpus[0]}{i}", "title": f"{colour} {thing}",
                     "text": f"{' '.join(FILLER[:4 + i % 5])} {colour} {thing} {thing} {colour}"})
    docs += [
        {"_id": f"{corpus[0]}-empty", "title": "  ", "text": "a text without a title"},
        {"_id": f"{corpus[0]}-same", "title": "Title Is Text", "text": "title  is text"},
    ]
    if corpus == "nfcorpus":  # nfcorpus sorts first: these are kept, scifact's s0 and n0 are not
        docs += [{"_id": "n-dup", "title": "RED  apple", "text": "another report of a red apple"},
                 {"_id": "n-dtext", "title": "amber river", "text": docs[0]["text"]}]
    return docs


def write_corpora(root: Path) -> Path:
    for corpus in ("scifact", "nfcorpus"):
        folder = root / corpus
        (folder / "qrels").mkdir(parents=True)
        with (folder / "corpus.jsonl").open("w") as out:
            for doc in _docs(corpus):
                out.write(json.dumps(doc) + "\n")
        (folder / "queries.jsonl").write_text("this is not JSON: reading it fails\n")
        for split in ("train", "test"):
            (folder / "qrels" / f"{split}.tsv").write_text("not\ta\tqrels\tfile\n")
    return root


def tiny_bert(folder: Path, texts: list[str], seed: int = 0) -> Path:
    """A 2-layer random BERT with a word-level vocabulary covering `texts`."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = sorted({w for t in texts for w in re.findall(r"[a-z0-9]+|[^\sa-z0-9]", t.lower())})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    if len(tokenizer) != len(vocab):  # transformers 4 reads vocab_file instead
        tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, initializer_range=0.5)
    BertModel(config).save_pretrained(folder)
    return folder


# 22 pairs to train on (26 titled - 1 duplicate title - 1 duplicate text - 2 held out), 4 per
# step: 5 steps an epoch
TINY = {"queries_per_step": "4", "query_max_length": "8", "passage_max_length": "16",
        "max_steps": "8", "epochs": "2", "save_steps": "4", "warmup_ratio": "0", "lr": "2e-3",
        "temperature": "0.1"}
SOURCE = "titles:scifact,nfcorpus"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("titles")
    data = write_corpora(root / "data")
    texts = [d["title"] + " " + d["text"] for c in ("scifact", "nfcorpus") for d in _docs(c)]
    ckpt = tiny_bert(root / "bert", texts)
    models = root / "models"
    models.mkdir()
    (models / "tiny-backbone.yaml").write_text(
        backbone_card(str(ckpt), pooling="cls", source="tests/test_finetune_titles.py"))
    return {"data": data, "models": models, "root": root}


@pytest.fixture
def env(setup, tmp_path, monkeypatch):
    """A fresh home and models folder per test; every loader of queries or qrels fails, and so
    does opening a queries file or anything in a qrels folder (whoever opens it)."""
    import builtins
    import io

    import benchmark.datasets.beir as beir
    import benchmark.training.finetune as finetune
    import benchmark.training.negatives as negatives

    models = tmp_path / "models"
    shutil.copytree(setup["models"], models)
    monkeypatch.setenv("MAEBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MAEBENCH_MODELS_DIR", str(models))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise AssertionError(f"queries or qrels were read: {args}")

    for module in (beir, negatives, finetune):
        for loader in ("load_queries", "load_qrels", "load_beir_folder", "load_dataset", "load_train_data"):
            if hasattr(module, loader):
                monkeypatch.setattr(module, loader, refuse)
    real_open = builtins.open

    def guarded_open(file, *args, **kwargs):
        if isinstance(file, str | Path) and (Path(file).name == "queries.jsonl"
                                             or Path(file).parent.name == "qrels"):
            raise AssertionError(f"opened {file}")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(io, "open", guarded_open)
    return {**setup, "models": models, "home": tmp_path / "home"}


def _finetune(env, name="tiny-titles", seed=0, overrides=None, callbacks=None, recipe="scratch-titles"):
    from benchmark.catalog.registry import get_card
    from benchmark.training.finetune import run_finetune

    return run_finetune(get_card("tiny-backbone", env["models"]), SOURCE, recipe, seed, name,
                        {**TINY, **(overrides or {})}, env["data"], "cpu", models_dir=env["models"],
                        progress=False, callbacks=callbacks)


def test_source_names_parse_and_normalise() -> None:
    from benchmark.training.title_pairs import pairs_task, parse_source

    assert parse_source("scifact") is None
    source = parse_source("titles: scifact , nfcorpus,scifact")
    assert source.corpora == ("nfcorpus", "scifact") and source.task == "titles:nfcorpus,scifact"
    assert source.label == "titles-nfcorpus-scifact"
    assert pairs_task(["scifact", "nfcorpus"]) == pairs_task("nfcorpus,scifact") == source.task
    with pytest.raises(MaebenchError, match="unknown training source 'queries'"):
        parse_source("queries:scifact")
    with pytest.raises(MaebenchError, match="names no corpus"):
        parse_source("titles: , ")


def test_pairs_skip_empty_and_self_titles_and_keep_the_first_duplicate() -> None:
    from benchmark.training.title_pairs import extract_pairs, split_held_out

    corpora = {
        "scifact": {"9": Document("A claim", "first text"), "10": Document("", "no title"),
                    "11": Document("Same", " same "), "12": Document("Other", "")},
        "nfcorpus": {"1": Document("a  CLAIM", "another text"), "2": Document("Fresh", "first text"),
                     "3": Document("Kept", "kept text")},
    }
    pairs, skipped = extract_pairs(corpora)
    # (task, id) order decides which duplicate stays: nfcorpus/1 before scifact/9 for the title;
    # nfcorpus/2's text is then taken, so scifact/9 (duplicate title anyway) goes
    assert [(p.pair_id, p.title, p.text) for p in pairs] == [
        ("nfcorpus/1", "a  CLAIM", "another text"), ("nfcorpus/2", "Fresh", "first text"),
        ("nfcorpus/3", "Kept", "kept text")]
    assert skipped == {"empty_title": 1, "empty_text": 1, "title_is_text": 1, "duplicate_title": 1,
                       "duplicate_text": 0}
    reordered = {k: dict(reversed(list(v.items()))) for k, v in reversed(list(corpora.items()))}
    assert extract_pairs(reordered) == (pairs, skipped)  # the files' order decides nothing

    many = [p for i in range(40) for p in extract_pairs(
        {"t": {str(i): Document(f"title {i}", f"text {i}")}})[0]]
    train, held = split_held_out(many)
    assert len(held) == 4 and len(train) == 36  # a tenth, below HELDOUT_PAIRS
    assert split_held_out(list(reversed(many)))[1] == sorted(held, key=lambda p: -int(p.title[6:]))


def test_loading_reads_each_corpus_and_nothing_else(env) -> None:
    from benchmark.core.files import sha256_file
    from benchmark.training.title_pairs import load_title_pairs, parse_source

    pairs = load_title_pairs(parse_source(SOURCE), env["data"])
    assert pairs.skipped == {"empty_title": 2, "empty_text": 0, "title_is_text": 2,
                             "duplicate_title": 1, "duplicate_text": 1}
    assert len(pairs.train) == 22 and len(pairs.held_out) == 2
    kept = {p.pair_id for p in pairs.train + pairs.held_out}
    assert {"nfcorpus/n-dup", "nfcorpus/n-dtext"} <= kept and not {"scifact/s0", "nfcorpus/n0"} & kept
    assert pairs.corpora == {t: sha256_file(env["data"] / t / "corpus.jsonl")
                             for t in ("nfcorpus", "scifact")}
    data = pairs.train_data()
    assert set(data.positives) == {p.pair_id for p in pairs.train}
    for pair in pairs.train:  # the positive is the text alone: the title is never in it
        assert data.dataset.queries[pair.pair_id] == pair.title
        assert data.dataset.corpus[pair.pair_id] == Document("", pair.text)
    record = pairs.record()
    assert record["queries_sha256"] is None and record["qrels_sha256"] is None
    assert record["pairs"]["held_out"] == len(pairs.held_out) == 2


@pytest.mark.slow
def test_a_short_run_lowers_the_in_batch_loss_and_records_its_source(env) -> None:
    from benchmark.catalog.registry import load_card
    from benchmark.studies.gates import _chance
    from benchmark.training.cards import training_log

    result = _finetune(env, overrides={"max_steps": "10", "epochs": "2", "save_steps": "5"})
    card = load_card(result.card_path)
    record = card.finetuning.record
    data = record.train_data
    assert data.task == "titles:nfcorpus,scifact" and data.queries_sha256 is None
    assert data.pairs.source == "titles" and set(data.pairs.corpora) == {"nfcorpus", "scifact"}
    assert data.pairs.pairs == data.n_pairs == 22 and data.pairs.held_out == data.held_out_queries == 2
    assert record.resolved_recipe["group_size"] == 1 and record.steps == 10
    assert "title -> text pairs" in card.description and "in-batch only" in card.finetuning.negatives
    # BEIR corpora: evaluated at the task lengths of the first corpus (q 64 / p 256, within 128)
    assert (card.retriever.query_max_length, card.retriever.passage_max_length) == (64, 128)

    log = training_log(result.weights_dir)
    chance = math.log(4)  # 4 pairs per step, in-batch negatives only
    assert log["chance_loss"] == pytest.approx(chance) == _chance(record.resolved_recipe)
    assert log["held_out_kind"] == "title -> text pairs" and log["held_out_queries"] == 2
    losses = [s["loss"] for s in log["steps"]]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3  # training moved
    held = log["validation"]
    assert [v["step"] for v in held] == [0, 5, 10]
    assert all(v["validation_chance"] == pytest.approx(math.log(2)) for v in held)  # 2 held out
    assert all(0 <= v["validation_accuracy"] <= 1 for v in held)
    assert "held-out loss (2 title -> text pairs)" in card.finetuning.notes


@pytest.mark.slow
def test_held_out_loss_is_the_trainers_loss_on_the_same_batch(env) -> None:
    """The pairs' validation computes loss and accuracy from one set of vectors: the loss equals
    the trainer's own (ClsMultipleNegativesRankingLoss) on the same batch."""
    import torch
    from transformers import TrainerCallback

    seen = {}

    class Compare(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            validation = next(c for c in self.trainer.callback_handler.callbacks if hasattr(c, "score"))
            model = self.trainer.model
            model.eval()
            with torch.no_grad():
                batch = validation.batches[0]
                seen["mine"] = validation.score(batch)
                seen["trainer"] = float(self.trainer.loss(batch, None))
            model.train()

        def bind(self, trainer):
            self.trainer = trainer

    _finetune(env, "compare", overrides={"max_steps": "1"}, callbacks=[Compare()])
    assert seen["mine"][0] == pytest.approx(seen["trainer"], rel=1e-5)
    assert seen["mine"][1] in (0.0, 0.5, 1.0)


@pytest.mark.slow
def test_resume_after_a_kill_gives_the_uninterrupted_weights(env) -> None:
    from transformers import TrainerCallback

    from benchmark.catalog.registry import load_card

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 6:
                raise KeyboardInterrupt("simulated kill after the step-4 checkpoint")

    whole = load_card(_finetune(env, "whole").card_path).finetuning.record.weights_sha256
    with pytest.raises(KeyboardInterrupt):
        _finetune(env, "killed", callbacks=[Crash()])
    assert not (env["models"] / "killed.yaml").exists()
    assert (env["home"] / "checkpoints" / "killed.partial" / "stage1" / "checkpoint-4").is_dir()
    resumed = load_card(_finetune(env, "killed").card_path)
    assert resumed.finetuning.record.weights_sha256 == whole


def test_one_line_errors(env, tmp_path) -> None:
    def check(match, **kwargs):
        with pytest.raises(MaebenchError, match=match) as info:
            _finetune(env, **kwargs)
        assert "\n" not in str(info.value)

    check("in-batch negatives only: recipe scratch-cosine has group_size 2", recipe="scratch-cosine")
    check("fewer than max_steps 40; raise --set epochs", overrides={"max_steps": "40"})
    from benchmark.catalog.registry import get_card
    from benchmark.training.finetune import run_finetune

    with pytest.raises(MaebenchError, match="reads no queries"):
        run_finetune(get_card("tiny-backbone", env["models"]), SOURCE, "scratch-titles", 0, "x", TINY,
                     env["data"], "cpu", models_dir=env["models"], progress=False,
                     held_out=frozenset({"q1"}))


# --- a study's finetune: {source: titles, corpus: ...} ----------------------------------------


SPEC = {
    "id": "tiny-titles", "description": "test", "init": "tiny-init", "corpus": "tiny",
    "budget_tokens": 512, "arms": [{"name": "base", "objective": None}], "seeds": [0],
    "finetune": {"source": "titles", "corpus": "scifact,nfcorpus", "recipe": "scratch-titles"},
    "evaluate": ["scifact"], "baseline_arm": "base",
}


def _spec(tmp_path: Path, **finetune):
    import yaml

    from benchmark.studies.spec import load_spec

    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump({**SPEC, "finetune": finetune or SPEC["finetune"]}))
    return load_spec(str(path))


def test_spec_takes_the_titles_source_and_keeps_the_task_form(tmp_path) -> None:
    from benchmark.studies.spec import FinetuneSpec, spec_digest

    study = _spec(tmp_path)
    assert study.finetune.task == "titles:nfcorpus,scifact"
    assert study.finetune.pairs_corpora == ("nfcorpus", "scifact")
    assert study.finetune.tasks == ("nfcorpus", "scifact")
    # the same source written as the task, or with the corpora as a list: the same study
    same = _spec(tmp_path, task="titles:scifact,nfcorpus", recipe="scratch-titles")
    listed = _spec(tmp_path, source="titles", corpus=["nfcorpus", "scifact"], recipe="scratch-titles")
    assert spec_digest(same) == spec_digest(study) == spec_digest(listed)
    # the task form is unchanged: no new field, so its registration hash is what it was
    assert set(FinetuneSpec.model_fields) == {"task", "recipe", "overrides", "pilot"}
    plain = FinetuneSpec(task="scifact", recipe="scratch-cosine")
    assert plain.pairs_corpora == () and plain.tasks == ("scifact",)
    assert plain.model_dump() == {"task": "scifact", "recipe": "scratch-cosine", "overrides": {},
                                  "pilot": None}


@pytest.mark.parametrize(("finetune", "match"), [
    ({"task": "scifact", "source": "titles", "corpus": "scifact", "recipe": "scratch-titles"}, "not both"),
    ({"source": "queries", "corpus": "scifact", "recipe": "scratch-titles"}, "the one pairs source"),
    ({"source": "titles", "recipe": "scratch-titles"}, "needs corpus"),
    ({"source": "titles", "corpus": " , ", "recipe": "scratch-titles"}, "needs corpus"),
    ({"source": "titles", "corpus": "scifact,nosuch", "recipe": "scratch-titles"}, "unknown task 'nosuch'"),
    ({"source": "titles", "corpus": "scifact", "recipe": "scratch-cosine"}, "in-batch negatives only"),
    ({"source": "titles", "corpus": "scifact", "recipe": "scratch-titles",
      "pilot": {"arm": "base", "learning_rates": [1e-3, 3e-3]}}, "choose the rate by calibration"),
    ({"task": "nosuch", "recipe": "scratch-cosine"}, "unknown task 'nosuch'"),
])
def test_spec_errors(tmp_path, finetune, match) -> None:
    with pytest.raises(MaebenchError, match=match) as info:
        _spec(tmp_path, **finetune)
    assert "\n" not in str(info.value)


def test_the_gate_fine_tunes_on_pairs_and_validates_on_train_queries(tmp_path, monkeypatch) -> None:
    """The fine-tuning gate (studies.gates.measure_validation) passes the titles source to the
    fine-tuning unchanged, with no held-out queries (the pairs read none), and scores the result
    against BM25 on the evaluation tasks' train queries as for a task."""
    import benchmark.studies.pilot as pilot
    import benchmark.training.finetune as finetune
    from benchmark.studies import gates
    from benchmark.studies.spec import StudyOptions

    monkeypatch.setenv("MAEBENCH_RESULTS_DIR", str(tmp_path / "results"))
    study = _spec(tmp_path)
    calls = []
    monkeypatch.setattr(finetune, "finetune_card",
                        lambda backbone, task, recipe, **kw: calls.append((task, recipe, kw["held_out"])))
    monkeypatch.setattr(gates, "study_card", lambda study, name: name)
    monkeypatch.setattr(gates, "validation_queries",
                        lambda study, task, data_dir: (f"{task} train", frozenset({"q1", "q2"})))
    monkeypatch.setattr(pilot, "score_on_queries", lambda card, data, held, metric, options:
                        0.2 if card == gates.gate_card_name(study) else 0.5)
    gates.measure_validation(study, StudyOptions())
    assert calls == [("titles:nfcorpus,scifact", "scratch-titles", None)]
    judged = gates.judge_validation(study)
    assert judged["value"] == pytest.approx(0.4) and judged["passed"] is True

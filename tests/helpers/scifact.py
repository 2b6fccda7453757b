"""A made-up BEIR folder named `scifact` (so the catalog's task applies: test split for
evaluation, train split for training), a workspace around it with a tiny BERT backbone, and the
tiny fine-tuning budget. Synthetic: nothing here needs ../shared."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.helpers.cards import backbone_card
from tests.helpers.paths import REPO

TOPICS = ["apple", "river", "engine", "violin", "glacier", "tomato", "rocket", "castle", "falcon", "copper"]
WORDS = ["red", "fast", "old", "green", "small", "loud", "cold", "bright"]


def corpus() -> dict[str, dict]:
    """30 documents, 3 per topic, as BEIR corpus rows."""
    docs = {}
    for i, topic in enumerate(TOPICS):
        for j in range(3):
            extra = " ".join(WORDS[(i + j + k) % len(WORDS)] for k in range(4))
            doc_id = f"d{i}-{j}"
            docs[doc_id] = {"_id": doc_id, "title": f"{topic} note", "text": f"the {topic} is {extra}"}
    return docs


TRAIN = {  # query id -> (text, positives); q0 has two positives
    "q0": ("which apple is red", ["d0-0", "d0-1"]),
    "q1": ("river cold", ["d1-0"]),
    "q2": ("engine fast loud", ["d2-1"]),
    "q3": ("violin old", ["d3-2"]),
    "q4": ("glacier small cold", ["d4-0"]),
    "q5": ("tomato green", ["d5-1"]),
    "q6": ("rocket bright fast", ["d6-0"]),
    "q7": ("castle old", ["d7-2"]),
}
TEST = {"t0": ("falcon fast", ["d8-0"]), "t1": ("copper bright", ["d9-1"])}

# a tiny budget: 8 train queries, 2 per step, group 2, 4 steps, a checkpoint every 2 steps
TINY = {"queries_per_step": "2", "group_size": "2", "query_max_length": "16", "passage_max_length": "32",
        "max_steps": "4", "save_steps": "2", "negatives_depth": "5", "lr": "1e-3"}


def texts() -> list[str]:
    """Every document and query text (the tiny BERT's vocabulary covers them)."""
    return [d["title"] + " " + d["text"] for d in corpus().values()] + [
        t for t, _ in {**TRAIN, **TEST}.values()]


def write_beir(root: Path, train: dict = TRAIN, test: dict = TEST, with_train: bool = True) -> Path:
    """Write `root`/scifact and return `root` (the data dir)."""
    folder = root / "scifact"
    (folder / "qrels").mkdir(parents=True)
    with (folder / "corpus.jsonl").open("w") as out:
        for doc in corpus().values():
            out.write(json.dumps(doc) + "\n")
    with (folder / "queries.jsonl").open("w") as out:
        for qid, (text, _) in {**train, **test}.items():
            out.write(json.dumps({"_id": qid, "text": text}) + "\n")
    splits = {"test": test, "train": train} if with_train else {"test": test}
    for split, queries in splits.items():
        rows = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t1" for q, (_, ds) in queries.items() for d in ds]
        (folder / "qrels" / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    return root


def make_workspace(root: Path) -> dict[str, Path]:
    """A data dir (`data`), a models dir with the tiny-backbone and bm25 cards (`models`) and the
    tiny BERT checkpoint (`ckpt`) under `root`."""
    from tests.helpers.checkpoints import tiny_bert

    root.mkdir(parents=True, exist_ok=True)
    data = write_beir(root / "data")
    ckpt = tiny_bert(root / "bert", texts(), initializer_range=0.5)
    models = root / "models"
    models.mkdir()
    (models / "tiny-backbone.yaml").write_text(backbone_card(str(ckpt)))
    shutil.copy(REPO / "models" / "bm25.yaml", models / "bm25.yaml")
    return {"data": data, "models": models, "ckpt": ckpt, "root": root}


def finetune(env, name="tiny-ft", seed=0, overrides=None, callbacks=None, data_dir=None):
    """`tiny-backbone` fine-tuned on the made-up scifact with the TINY budget (plus `overrides`)."""
    from benchmark.catalog.registry import get_card
    from benchmark.training.finetune import run_finetune

    return run_finetune(
        get_card("tiny-backbone", env["models"]), "scifact", "standard-cpu", seed, name,
        {**TINY, **(overrides or {})}, data_dir or env["data"], "cpu", models_dir=env["models"],
        progress=False, callbacks=callbacks,
    )

"""The card a `maebench finetune` run writes, and how it is published.

The new card is the backbone's card with the recipe's encoding (pooling, similarity,
normalisation, evaluation lengths), weights named `home:checkpoints/<name>` with the sha256 of
the weights as revision (checked at load), `finetuned_from: <backbone>` and a full record.
Weights, then card, each appear by rename: a kill never leaves a half card in models/.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from benchmark.catalog.registry import DenseConfig, ModelCard, parse_card
from benchmark.core.errors import MaebenchError, RegistryError
from benchmark.training.recipes import Recipe

# `task` evaluation lengths: MS MARCO's passages are short and its papers evaluate at the training
# lengths (q 32 / p 144); BEIR documents are long (SciFact: 96% exceed 144 tokens, 71% exceed 256)
# and 12% of SciFact's claims exceed 32 tokens, so BEIR tasks are evaluated at q 64 / p 256.
BEIR_EVAL_LENGTHS = (64, 256)


def is_msmarco_family(task: str | None) -> bool:
    """MS MARCO dev and the TREC DL tracks on its corpus."""
    if task is None:
        return False
    from benchmark.catalog.tasks import get_task

    spec = get_task(task)
    return spec.name == "msmarco" or spec.path == "msmarco"


def eval_lengths(recipe: Recipe, backbone: DenseConfig, task: str | None = None,
                 max_positions: int | None = None) -> tuple[int, int]:
    """The query/passage lengths the new card evaluates with (the recipe says which; `task`
    picks them by the task the model is trained for: see BEIR_EVAL_LENGTHS), never beyond the
    model's position embeddings (`max_positions`: a small backbone may have fewer than 256)."""

    def pick(value, training: int, original: int, beir: int) -> int:
        if value == "training":
            return training
        if value == "backbone":
            return original
        if value == "task":
            return training if task is None or is_msmarco_family(task) else beir
        return int(value)

    lengths = (
        pick(recipe.eval_query_max_length, recipe.query_max_length, backbone.query_max_length,
             BEIR_EVAL_LENGTHS[0]),
        pick(recipe.eval_passage_max_length, recipe.passage_max_length, backbone.passage_max_length,
             BEIR_EVAL_LENGTHS[1]),
    )
    if max_positions:
        return min(lengths[0], max_positions), min(lengths[1], max_positions)
    return lengths


def eval_config(backbone: DenseConfig, recipe: Recipe, checkpoint: str, revision: str | None,
                task: str | None = None, max_positions: int | None = None) -> DenseConfig:
    query_len, passage_len = eval_lengths(recipe, backbone, task, max_positions)
    return backbone.model_copy(update={
        "checkpoint": checkpoint,
        "revision": revision,
        "local_package": None,
        "pooling": recipe.pooling,
        "normalize": recipe.similarity == "cosine",
        "similarity": recipe.similarity,
        "query_max_length": query_len,
        "passage_max_length": passage_len,
        "dtype": "float32",
    })


def display_name(backbone: ModelCard, recipe: Recipe, task: str, seed: int,
                 overrides: dict | None = None) -> str:
    """`<backbone> + <recipe>[ key=value ...] (<task>, seed <n>)`: the --set overrides are part
    of the name, so two runs with different settings never show the same one."""
    changed = "".join(f" {k}={v}" for k, v in sorted((overrides or {}).items()))
    return f"{backbone.display_name} + {recipe.name}{changed} ({task}, seed {seed})"


@dataclass(frozen=True)
class DataText:
    """How a card describes training data that is not a task's train split (title -> text
    pairs, training.title_pairs), and the task whose evaluation lengths apply (`eval_task`)."""

    trained_on: str
    data: str
    negatives: str
    eval_task: str | None


def card_yaml(
    backbone: ModelCard, config: DenseConfig, recipe: Recipe, task: str, seed: int, name: str,
    digest: str, record: dict, max_positions: int | None = None, notes: str | None = None,
    described: DataText | None = None,
) -> str:
    """The new card's YAML (validated); `notes`: the training curve's summary (finetune_log.
    curve_summary), since the record's schema has no field for it; `described`: the words for
    data other than `task`'s train split."""
    import yaml

    from benchmark.catalog.weights import SHA256_REVISION, home_checkpoint

    retriever = eval_config(config, recipe, home_checkpoint(f"checkpoints/{name}"), SHA256_REVISION + digest,
                            described.eval_task if described else task, max_positions)
    query_len, passage_len = retriever.query_max_length, retriever.passage_max_length
    card = {
        "name": name,
        "display_name": display_name(backbone, recipe, task, seed, record.get("overrides")),
        "family": backbone.family,
        "description": (
            f"{backbone.display_name} fine-tuned by maebench with the '{recipe.name}' recipe on "
            f"{described.trained_on if described else f'the {task} train split'} (seed {seed}); "
            f"evaluated with {recipe.pooling} pooling, "
            f"{recipe.similarity} similarity, query {query_len} / passage {passage_len} tokens."
        ),
        "source": (
            f"maebench finetune (benchmark/data/recipes/{recipe.name}.yaml, resolved recipe in "
            "finetuning.record); encoding settings are the recipe's, prefixes and title mode the "
            f"backbone card's ({backbone.name})"
        ),
        "paper": backbone.paper.model_dump(mode="json", exclude_none=True) if backbone.paper else None,
        "license": backbone.license,
        "parameters": backbone.parameters,
        "embedding_dim": backbone.embedding_dim,
        "retriever": retriever.model_dump(mode="json", exclude_none=True),
        "pretraining": backbone.pretraining.model_dump(mode="json") if backbone.pretraining else None,
        "finetuning": {
            "stage": "fine-tuned",
            "data": described.data if described else
            f"{task} train split ({record['train_data']['n_queries']} queries)",
            "negatives": described.negatives if described else (
                f"{recipe.negatives_card} top-{recipe.negatives_depth} over the {task} corpus, judged "
                "positives removed, sampled with the seed, plus in-batch"
                + (f"; stage 2: mined by the stage-1 model to depth {recipe.stage2_mining_depth}"
                   if recipe.stages == 2 else "")
            ),
            "distillation": "none",
            "notes": notes,
            "record": record,
        },
        "finetuned_from": backbone.name,
    }
    card["finetuning"] = {k: v for k, v in card["finetuning"].items() if v is not None}
    card = {k: v for k, v in card.items() if v is not None}
    text = yaml.safe_dump(card, sort_keys=False, allow_unicode=True, width=100)
    try:
        parse_card(text, f"generated card {name}")
    except RegistryError as exc:  # a bug here, not a user error; keep the message
        raise MaebenchError(f"the generated card is invalid: {exc}") from exc
    return text


def publish(final: Path, weights_dir: Path, card_text: str, card_path: Path, work: Path) -> None:
    """Weights first, then the card (each by rename), then drop the work folder: a kill between
    the two leaves no card, and the re-run (work folder still there) finishes the job."""
    from benchmark.core.files import atomic_write

    card_path.parent.mkdir(parents=True, exist_ok=True)
    if weights_dir.exists():
        old = weights_dir.with_name(weights_dir.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        weights_dir.rename(old)
        final.rename(weights_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        final.rename(weights_dir)
    atomic_write(card_path, card_text.encode())
    shutil.rmtree(work, ignore_errors=True)


LOG_FILE = "finetune_log.json"  # a fine-tuning's per-step curve, beside its weights
LOG_VERSION = 1


def training_log(weights_dir: Path) -> dict | None:
    """The finetune_log.json of a fine-tuned weights folder (None when absent or unreadable)."""
    from benchmark.core.errors import MaebenchError
    from benchmark.core.paths import load_json_bounded

    path = Path(weights_dir) / LOG_FILE
    if not path.is_file():
        return None
    try:
        found = load_json_bounded(path, 64 << 20, "fine-tuning log")
    except MaebenchError:
        return None
    return found if isinstance(found, dict) and found.get("version") == LOG_VERSION else None


def finetune_curve(card: ModelCard) -> dict | None:
    """The training curve of a fine-tuned card, for plots (the study page): the finetune_log.json
    beside its weights, as written by `maebench finetune` (benchmark.training.finetune_log.
    build_training_log: `steps` [{stage, step, loss, lr}], `validation` [{stage, step,
    validation_loss, validation_chance, validation_queries}, plus validation_accuracy and
    validation_candidates for title -> text pairs, whose log also says `held_out_kind`],
    `chance_loss`, `candidates_per_query`, `final_window_loss`, `final_window_share_of_chance`).
    None for a card that was not fine-tuned here, or whose weights folder is not on this machine
    or has no log (cards from before the log existed)."""
    from benchmark.catalog.weights import resolve_checkpoint
    from benchmark.core.errors import ModelLoadError

    config = card.retriever
    if card.finetuned_from is None or getattr(config, "kind", None) != "dense" or not config.has_checkpoint:
        return None
    try:  # no revision: the log is read, the weights are not loaded (their check is the loader's)
        folder, origin = resolve_checkpoint(config.checkpoint, config.local_package, None)
    except ModelLoadError:
        return None
    if origin == "hub":
        return None
    return training_log(Path(folder))

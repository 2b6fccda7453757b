"""The fine-tuning log: every step's loss and learning rate, and held-out evaluations.

What `<weights>/finetune_log.json` holds (build_training_log; read back with cards.
finetune_curve) and the card's one-sentence summary of it (curve_summary): chance = ln(candidates
per query), the mean loss of the final window (the fine-tuning gate's "final training loss") and
the held-out evaluations of HeldOutValidation, a trainer callback that scores a held-out set (train
queries held out of a task, or a seeded slice of title -> text pairs) without touching the
training's random stream.
"""

from __future__ import annotations

from benchmark.catalog.registry import DenseConfig
from benchmark.training.cards import LOG_FILE, LOG_VERSION
from benchmark.training.finetune_trainer import QUERY_COLUMN, build_dataset
from benchmark.training.negatives import Example, TrainData
from benchmark.training.recipes import Recipe

FINAL_WINDOW = 10  # steps in the "final training loss" that the fine-tuning gate compares


def chance_loss(recipe: Recipe) -> tuple[int, float]:
    """(candidates per query, ln of it): the loss of a model that cannot tell its positive from
    the other candidates (its group and every other query's group, on every device)."""
    import math

    candidates = recipe.queries_per_step * recipe.group_size
    return candidates, math.log(candidates)


def build_training_log(name: str, recipe: Recipe, stage_stats: list[dict], held_out: int,
                       held_out_kind: str | None = None) -> dict:
    """What finetune_log.json holds: per step (stage, step, loss, lr), the validation entries,
    chance = ln(candidates per query) and the mean loss of the last FINAL_WINDOW steps of the
    last stage with its share of chance (the fine-tuning gate's "final training loss").
    `held_out_kind` names what was held out when it is not train queries (e.g. "title -> text
    pairs"); the log of a task's fine-tuning is unchanged by it."""
    candidates, chance = chance_loss(recipe)
    steps = [{"stage": i + 1, "step": e["step"], "loss": e["loss"], "lr": e["lr"]}
             for i, stats in enumerate(stage_stats) for e in stats.get("curve", [])]
    validation = [{"stage": i + 1, **{k: v for k, v in e.items() if k != "stage"}}
                  for i, stats in enumerate(stage_stats) for e in stats.get("validation", [])]
    last = [e["loss"] for e in stage_stats[-1].get("curve", [])][-FINAL_WINDOW:] if stage_stats else []
    window = sum(last) / len(last) if last else None
    found = {
        "version": LOG_VERSION,
        "name": name,
        "recipe": recipe.name,
        "candidates_per_query": candidates,
        "chance_loss": chance,
        "final_window_steps": len(last),
        "final_window_loss": window,
        "final_window_share_of_chance": window / chance if window is not None else None,
        "held_out_queries": held_out,
        "steps": steps,
        "validation": validation,
    }
    if held_out_kind is not None:
        found["held_out_kind"] = held_out_kind
    return found


def curve_summary(training_log: dict) -> str:
    """One sentence for the card's notes (the card's record has no field for it)."""
    steps = training_log["steps"]
    if not steps:
        return f"training log: {LOG_FILE} beside the weights (no step recorded)"
    text = (f"training curve ({LOG_FILE} beside the weights): {len(steps)} steps, loss "
            f"{steps[0]['loss']:.4f} -> {steps[-1]['loss']:.4f}; mean of the last "
            f"{training_log['final_window_steps']} steps {training_log['final_window_loss']:.4f} = "
            f"{training_log['final_window_share_of_chance']:.3f} of chance (ln "
            f"{training_log['candidates_per_query']} = {training_log['chance_loss']:.4f})")
    held = training_log["validation"]
    if held:
        kind = training_log.get("held_out_kind", "train queries")
        text += (f"; held-out loss ({training_log['held_out_queries']} {kind}) "
                 f"{held[0]['validation_loss']:.4f} at step {held[0]['step']} -> "
                 f"{held[-1]['validation_loss']:.4f} at step {held[-1]['step']}")
        if "validation_accuracy" in held[0] and "validation_accuracy" in held[-1]:
            text += (f", top-1 accuracy among {held[-1]['validation_candidates']} "
                     f"{held[0]['validation_accuracy']:.3f} -> {held[-1]['validation_accuracy']:.3f}")
    return text


def HeldOutValidation(plan: list[Example], data: TrainData, recipe: Recipe, config: DenseConfig,  # noqa: N802
                      batch: int, every: int, accuracy: bool = False):
    """Held-out contrastive loss (eval mode: no dropout, so no random numbers drawn and the
    training's own stream is untouched) at step 0, every `every` steps and at the last step,
    appended to the trainer's log_history (saved in every checkpoint, so a resumed run keeps
    the entries before its checkpoint). With `accuracy`, also the share of held-out rows whose
    own positive scores highest among the batch's candidates (read beside the loss: a loss can
    fall by sharpening scores that were already ranked right), from the same vectors."""
    import math

    from transformers import TrainerCallback

    candidates = batch * recipe.group_size

    class _Validation(TrainerCallback):
        def __init__(self) -> None:
            self.trainer = None
            self.batches: list[list[dict]] = []

        def bind(self, trainer) -> None:
            self.trainer = trainer
            dataset, cache = build_dataset(plan, data, recipe, config, trainer.model)
            columns = dataset.column_names
            for start in range(0, len(dataset), batch):
                rows = dataset[start:start + batch]
                self.batches.append([
                    cache.preprocess(rows[col], task="query" if col == QUERY_COLUMN else "document")
                    for col in columns])

        def evaluate(self, state) -> None:
            import torch

            model = self.trainer.model
            was_training = model.training
            model.eval()
            try:
                with torch.no_grad():
                    scored = [self.score(_to_device(features, model.device))
                              for features in self.batches]
            finally:
                model.train(was_training)
            entry = {"step": int(state.global_step),
                     "validation_loss": sum(s[0] for s in scored) / len(scored),
                     "validation_chance": math.log(candidates), "validation_queries": len(plan)}
            if accuracy:
                entry["validation_accuracy"] = sum(s[1] for s in scored) / len(scored)
                entry["validation_candidates"] = candidates
            state.log_history.append(entry)

        def score(self, features: list[dict]) -> tuple[float, float | None]:
            """(loss, top-1 accuracy or None) of one held-out batch: the trainer's own loss,
            and with `accuracy` its logits (similarity x scale over [positives | negatives],
            the positive of row i at column i) from sentence-transformers' embeddings."""
            if not accuracy:
                return float(self.trainer.loss(features, None)), None
            import torch
            from sentence_transformers.base.losses.merged_forward import embed_columns

            loss_fn = self.trainer.loss
            anchors, *docs = embed_columns(loss_fn.model, features)
            logits = loss_fn.similarity_fct(anchors, torch.cat(docs)) * loss_fn.scale
            labels = torch.arange(anchors.shape[0], device=logits.device)
            loss = torch.nn.functional.cross_entropy(logits, labels)
            return float(loss), float((logits.argmax(dim=1) == labels).float().mean())

        def on_train_begin(self, args, state, control, **kwargs):
            if state.global_step == 0 and self.batches:
                self.evaluate(state)

        def on_step_end(self, args, state, control, **kwargs):
            if self.batches and (state.global_step % every == 0 or state.global_step == state.max_steps):
                self.evaluate(state)

    return _Validation()


def _to_device(features: list[dict], device) -> list[dict]:
    return [{k: v.to(device) if hasattr(v, "to") else v for k, v in f.items()} for f in features]


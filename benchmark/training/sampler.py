"""The training-time pieces of fine-tuning that build on sentence-transformers: the batch
sampler (rows in dataset order), the token cache the collator reads instead of re-tokenising, the
contrastive loss with a [CLS] fast path, and the trainer that records each step and refuses a
loss that is not finite.

The sampler: rows in dataset order.

negatives.plan_epochs already shuffles every epoch with the seed, so the trainer must read the
rows as they are (its default would shuffle them again). A module-level class, not a closure,
because the trainer pickles its arguments into every checkpoint. Imports sentence-transformers
at module level: import this module only where training starts.
"""

from __future__ import annotations

import math

from sentence_transformers import SentenceTransformerTrainer
from sentence_transformers.base.sampler import DefaultBatchSampler
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from torch.utils.data import SequentialSampler


class SequentialBatchSampler(DefaultBatchSampler):
    """Rows in dataset order (the plan's order is the training order)."""

    def __init__(self, dataset, batch_size: int, drop_last: bool, valid_label_columns=None,
                 generator=None, seed: int = 0) -> None:
        super().__init__(SequentialSampler(dataset), batch_size=batch_size, drop_last=drop_last,
                         valid_label_columns=valid_label_columns, generator=generator, seed=seed)


# --- token ids cached once per run ----------------------------------------------------------


class TokenCache:
    """Token ids of every query and passage a run trains on, tokenised once before training.

    The old path kept texts in the dataset and let the trainer's collator re-tokenise 64 queries
    and 128 passages at every step (and a datasets transform rebuilt every passage text from the
    corpus first); each text is now tokenised exactly once, with the arguments
    `Transformer.preprocess` uses (truncation `longest_first` at the task's max length), stored
    as one flat int32 array per task (an MS MARCO plan of millions of passages would not fit as
    Python lists), and a batch is padded to its own longest row. `preprocess` stands in for
    `model.preprocess` as the collator's `preprocess_fn`: the dataset's rows hold row numbers
    into this cache, so what the model sees is bit for bit what the old path fed it (a test
    compares the two)."""

    def __init__(self, tokenizer, texts: dict[str, list[str]], max_lengths: dict[str, int | None],
                 chunk: int = 4096) -> None:
        import numpy as np

        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0)
        self.pad_type_id = int(getattr(tokenizer, "pad_token_type_id", 0) or 0)
        self.left = getattr(tokenizer, "padding_side", "right") == "left"
        self.with_types = "token_type_ids" in getattr(tokenizer, "model_input_names", ())
        self.ids: dict[str, np.ndarray] = {}
        self.offsets: dict[str, np.ndarray] = {}
        for task, rows in texts.items():
            kwargs = {"truncation": "longest_first", "padding": False}
            if max_lengths.get(task):
                kwargs["max_length"] = max_lengths[task]
            pieces, lengths = [], []
            for start in range(0, len(rows), chunk):
                encoded = tokenizer(rows[start:start + chunk], **kwargs)["input_ids"]
                lengths.extend(len(e) for e in encoded)
                pieces.append(np.fromiter((t for e in encoded for t in e), dtype=np.int32))
            self.ids[task] = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)
            self.offsets[task] = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])

    def lengths(self, task: str, rows: list[int]):
        import numpy as np

        offsets = self.offsets[task]
        index = np.asarray(rows, dtype=np.int64)
        return offsets[index + 1] - offsets[index]

    def preprocess(self, inputs: list[int], prompt: str | None = None, task: str | None = None,
                   **kwargs) -> dict:
        """The collator's preprocess_fn: row numbers -> padded `input_ids`, `attention_mask`
        (and `token_type_ids` where the tokenizer has them), as `model.preprocess` returns."""
        import numpy as np
        import torch

        if prompt:
            raise ValueError("TokenCache: prompts are part of the cached texts, not added per batch")
        key = "query" if task == "query" else "document"
        ids, offsets = self.ids[key], self.offsets[key]
        rows = [int(i) for i in inputs]
        lengths = [int(offsets[i + 1] - offsets[i]) for i in rows]
        width = max(lengths)
        input_ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for r, (i, n) in enumerate(zip(rows, lengths, strict=True)):
            span = slice(width - n, width) if self.left else slice(0, n)
            input_ids[r, span] = ids[offsets[i]:offsets[i] + n]
            mask[r, span] = 1
        out = {"input_ids": torch.from_numpy(input_ids)}
        if self.with_types:
            types = np.zeros_like(input_ids)
            types[mask == 0] = self.pad_type_id
            out["token_type_ids"] = torch.from_numpy(types)
        out["attention_mask"] = torch.from_numpy(mask)
        out["modality"] = "text"
        return out


# --- the loss: sentence-transformers' MNRL, with [CLS] vectors computed without waste ----------


def cls_fast_path(model) -> bool:
    """Whether `cls_embeddings` computes exactly what `model(features)` does: a plain (not
    distributed) sentence-transformers model [Transformer over a BERT-layout encoder, Pooling
    'cls', Normalize?] with right padding. Anything else takes sentence-transformers' own path."""
    try:
        from sentence_transformers.base.modules.normalize import Normalize
        from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    except ImportError:  # pragma: no cover - other sentence-transformers layouts
        return False
    modules = list(model.children()) if hasattr(model, "children") else []
    if len(modules) not in (2, 3) or not isinstance(modules[0], Transformer):
        return False
    if not isinstance(modules[1], Pooling) or modules[1].pooling_mode not in ("cls", ["cls"], ("cls",)):
        return False
    if len(modules) == 3 and not isinstance(modules[2], Normalize):
        return False
    encoder = getattr(modules[0], "auto_model", None)
    config = getattr(encoder, "config", None)
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if config is None or layers is None or len(layers) == 0:
        return False
    if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        return False
    if getattr(config, "chunk_size_feed_forward", 0):
        return False
    last = layers[-1]
    needed = ("attention", "feed_forward_chunk")
    if not all(hasattr(last, n) for n in needed) or not all(
            hasattr(last.attention.self, n) for n in ("query", "key", "value", "scaling")):
        return False
    tokenizer = getattr(modules[0], "tokenizer", None)
    return getattr(tokenizer, "padding_side", "right") == "right"


def _cls_only_layer(layer):
    """A stand-in for an encoder's last layer that computes its output at the first position
    only: with [CLS] pooling nothing else of the last layer reaches the loss, and the other
    positions' query projection, attention rows, output projection and feed-forward were about a
    fifth of a 4-layer model's work. Keys and values still come from every position, so the
    [CLS] vector is the same function of the input (equal to float rounding)."""
    import torch
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    class _ClsOnly(torch.nn.Module):
        def __init__(self, inner) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, hidden_states, attention_mask=None, *args, **kwargs):
            inner = self.inner
            attention = inner.attention.self
            batch, length, _ = hidden_states.shape
            head = attention.attention_head_size
            first = hidden_states[:, :1]
            query = attention.query(first).view(batch, 1, -1, head).transpose(1, 2)
            key = attention.key(hidden_states).view(batch, length, -1, head).transpose(1, 2)
            value = attention.value(hidden_states).view(batch, length, -1, head).transpose(1, 2)
            mask = attention_mask
            if mask is not None and mask.dim() == 4 and mask.shape[2] > 1:
                mask = mask[:, :, :1, :]
            interface = ALL_ATTENTION_FUNCTIONS.get_interface(
                attention.config._attn_implementation, _eager_attention)
            out, _ = interface(attention, query, key, value, mask,
                               dropout=attention.dropout.p if attention.training else 0.0,
                               scaling=attention.scaling, is_causal=False)
            out = out.reshape(batch, 1, -1).contiguous()
            return inner.feed_forward_chunk(inner.attention.output(out, first))

    return _ClsOnly(layer)


def _eager_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    import torch

    weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        weights = weights + attention_mask
    weights = torch.nn.functional.softmax(weights, dim=-1)
    weights = torch.nn.functional.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


def cls_embeddings(model, features: dict):
    """The sentence embeddings `model(features)` gives, on the fast path (see cls_fast_path):
    the encoder runs with its last layer reduced to the [CLS] row, rows are sorted by length
    and run in chunks trimmed to their own longest row where that saves a tenth or more of the
    positions (queries padded to the longest of 64 were half padding), and Pooling/Normalize
    are the model's own modules."""
    import torch

    modules = list(model.children())
    transformer = modules[0]
    encoder = transformer.auto_model
    layers = encoder.encoder.layer
    mask = features["attention_mask"]
    lengths = mask.sum(dim=1)
    order = torch.argsort(lengths, descending=True, stable=True)
    chunks = _chunks(lengths[order].tolist())
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in features]
    last = layers[-1]
    layers[-1] = _cls_only_layer(last)
    try:
        if len(chunks) == 1:  # nothing to trim: the rows as they are, no reordering copies
            width = chunks[0][2]
            inputs = {k: features[k][:, :width] for k in keys}
            hidden = encoder(**inputs, return_dict=True).last_hidden_state[:, 0]
        else:
            outputs = []
            for start, stop, width in chunks:
                rows = order[start:stop]
                inputs = {k: features[k][rows, :width] for k in keys}
                outputs.append(encoder(**inputs, return_dict=True).last_hidden_state[:, 0])
            hidden = torch.cat(outputs)[torch.argsort(order)]
    finally:
        layers[-1] = last
    pooled = {"token_embeddings": hidden.unsqueeze(1),
              "attention_mask": torch.ones(hidden.shape[0], 1, dtype=mask.dtype, device=mask.device)}
    for module in modules[1:]:
        pooled = module(pooled)
    return pooled["sentence_embedding"]


def _chunks(sorted_lengths: list[int], parts: int = 4, min_rows: int = 8) -> list[tuple[int, int, int]]:
    """(start, stop, width) row ranges over lengths sorted longest first: one range, unless
    `parts` equal ranges each trimmed to its own longest row save at least 10% of positions."""
    rows = len(sorted_lengths)
    whole = [(0, rows, sorted_lengths[0] if rows else 0)]
    if rows < parts * min_rows:
        return whole
    size = -(-rows // parts)
    split = [(s, min(s + size, rows), sorted_lengths[s]) for s in range(0, rows, size)]
    if sum((stop - start) * width for start, stop, width in split) > 0.9 * rows * sorted_lengths[0]:
        return whole
    return split


class ClsMultipleNegativesRankingLoss(MultipleNegativesRankingLoss):
    """sentence-transformers' MultipleNegativesRankingLoss (the same `compute_loss_from_embeddings`,
    so the same loss), with the embeddings computed by `cls_embeddings` where `cls_fast_path`
    holds and by sentence-transformers otherwise (other poolings, distributed runs)."""

    def forward(self, sentence_features, labels):
        features = list(sentence_features)
        if self.gather_across_devices or not cls_fast_path(self.model):
            return super().forward(features, labels)
        from sentence_transformers.base.losses.merged_forward import merge_feature_batches

        anchors = cls_embeddings(self.model, features[0])
        candidates = features[1:]
        merged = merge_feature_batches(candidates) if len(candidates) > 1 else candidates[0]
        if merged is None:
            docs = [cls_embeddings(self.model, f) for f in candidates]
        else:
            docs = list(cls_embeddings(self.model, merged).split(anchors.shape[0]))
        return self.compute_loss_from_embeddings([anchors, *docs], labels)


class FinetuneTrainer(SentenceTransformerTrainer):
    """The sentence-transformers trainer, plus what maebench needs of every step: the loss and
    learning rate of each optimiser step kept in `curve` (the log beside the weights; the
    trainer's own history keeps only logged steps' means), and a loss that is NaN or infinite
    stops the run at once with one line (step and value) instead of training on to NaN weights
    that a card would then claim. The widget examples of sentence-transformers' model card are
    not computed (they encode texts before training; maebench writes no model card)."""

    def __init__(self, *args, **kwargs) -> None:
        self.curve: list[dict] = []
        super().__init__(*args, **kwargs)

    def add_model_card_callback(self, default_args_dict) -> None:
        return None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                      num_items_in_batch=num_items_in_batch)
        if model.training:
            loss = result[0] if isinstance(result, tuple) else result
            value = float(loss.detach())
            step = int(self.state.global_step) + 1
            if not math.isfinite(value):
                from benchmark.training.recipes import FinetuneError

                raise FinetuneError(
                    f"the training loss became {value} at step {step}; stopped, no card written "
                    "(lower the learning rate, or check the backbone's weights)")
            scheduler = getattr(self, "lr_scheduler", None)
            lr = (float(scheduler.get_last_lr()[0]) if scheduler is not None
                  else float(self.args.learning_rate))
            if self.curve and self.curve[-1]["step"] == step:  # gradient accumulation: one entry
                entry = self.curve[-1]
                done = entry["micro_batches"]
                entry["loss"] = (entry["loss"] * done + value) / (done + 1)
                entry["micro_batches"] = done + 1
            else:
                self.curve.append({"step": step, "loss": value, "lr": lr, "micro_batches": 1})
        return result

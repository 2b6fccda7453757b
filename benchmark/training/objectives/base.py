"""The one interface every pre-training objective implements, and the parts they share.

An objective is a torch module that owns the encoder (the only weights that get saved), the MLM
head and whatever decoder its paper adds. Two calls per step:
  corrupt(pairs, rng) -> tensors   masks/corrupts a batch of span pairs (CPU, numpy, seeded)
  forward(batch)      -> (loss, parts)   the paper's loss, and its named terms for the log
`encoder` is what gets saved; `head_notes` says how heads/decoders were initialised.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.core.errors import MaebenchError
from benchmark.training.corpus import Span
from benchmark.training.masking import replace_masked, whole_word_mask, word_groups


class DecoderLayer(nn.Module):
    """A post-LayerNorm BERT layer whose queries may come from a different stream than its
    keys/values (RetroMAE's BertLayerForDecoder); with query = key it is a plain BertLayer.
    Hand-written because transformers' BertLayer has no separate query stream; submodule names
    match BertLayer's so an encoder layer's state_dict loads into it (SimLM copies layers)."""

    def __init__(self, config) -> None:
        super().__init__()
        hidden = config.hidden_size
        self.heads = config.num_attention_heads
        self.attention = nn.Module()
        self.attention.self = nn.Module()
        self.attention.self.query = nn.Linear(hidden, hidden)
        self.attention.self.key = nn.Linear(hidden, hidden)
        self.attention.self.value = nn.Linear(hidden, hidden)
        self.attention.output = nn.Module()
        self.attention.output.dense = nn.Linear(hidden, hidden)
        self.attention.output.LayerNorm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(hidden, config.intermediate_size)
        self.output = nn.Module()
        self.output.dense = nn.Linear(config.intermediate_size, hidden)
        self.output.LayerNorm = nn.LayerNorm(hidden, eps=config.layer_norm_eps)
        self.dropout = config.hidden_dropout_prob
        self.attention_dropout = config.attention_probs_dropout_prob
        from transformers.activations import ACT2FN

        self.act = ACT2FN[config.hidden_act]
        std = config.initializer_range
        for module in self.modules():  # BertPreTrainedModel._init_weights
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=std)
                nn.init.zeros_(module.bias)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        return x.view(b, n, self.heads, d // self.heads).transpose(1, 2)

    def forward(self, query: torch.Tensor, key: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
        """visible: bool (B, Lq, Lk) or (B, 1, Lk); False = this query may not attend there."""
        attn = self.attention
        q = self._split(attn.self.query(query))
        k = self._split(attn.self.key(key))
        v = self._split(attn.self.value(key))
        bias = torch.zeros(visible.shape, dtype=q.dtype, device=q.device)
        bias = bias.masked_fill(~visible, torch.finfo(q.dtype).min).unsqueeze(1)
        p = self.attention_dropout if self.training else 0.0
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=p)
        context = context.transpose(1, 2).reshape(query.shape)
        drop = self.dropout if self.training else 0.0
        hidden = attn.output.LayerNorm(F.dropout(attn.output.dense(context), drop, self.training) + query)
        inner = self.act(self.intermediate.dense(hidden))
        return self.output.LayerNorm(F.dropout(self.output.dense(inner), drop, self.training) + hidden)


def pad(rows: list[np.ndarray], value: int) -> torch.Tensor:
    width = max(len(r) for r in rows)
    out = np.full((len(rows), width), value, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return torch.from_numpy(out)


def flatten(pairs: list[tuple[Span, Span]]) -> list[Span]:
    """[A0, B0, A1, B1, ...]: every objective encodes both spans of every pair."""
    return [span for pair in pairs for span in pair]


def mlm_loss(head: nn.Module, hidden: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over the labelled positions only: the same value as the authors'
    CrossEntropyLoss(ignore_index=-100) over all positions, without computing vocabulary logits
    for positions that carry no label."""
    where = labels != -100
    if not bool(where.any()):
        return hidden.sum() * 0.0
    logits = head(hidden[where])
    return F.cross_entropy(logits.float(), labels[where])


def bag_of_words(spans: list[Span], vocab_size: int) -> torch.Tensor:
    """DupMAE's target (RetroMAE repo, DupMAECollator): weight[t] = 1/n for every token t of the
    n content tokens (repeats overwrite, so the row sums to (#distinct)/n, as theirs)."""
    out = torch.zeros(len(spans), vocab_size)
    for i, span in enumerate(spans):
        content = span.ids[span.words >= 0]
        out[i, torch.from_numpy(content)] = 1.0 / max(len(content), 1)
    return out


class Objective(nn.Module):
    """Base class: the encoder, its (tied) MLM head, and the encoder-side masking."""

    name: ClassVar[str]
    needs_decoder_mask: ClassVar[bool] = False
    # True when the loss is a mean of per-example terms, so that data-parallel workers may each
    # take part of a step's batch and average gradients (what the papers' DDP runs did). False
    # (the default, for plug-ins too) when examples meet inside the loss (in-batch negatives):
    # such an objective always trains in one process (training.processes)
    batch_separable: ClassVar[bool] = False

    def __init__(self, encoder, head: nn.Module, tokenizer, params: dict[str, Any]) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.tokenizer = tokenizer
        self.params = params
        self.vocab_size = encoder.config.vocab_size
        self.progress = 0.0  # fraction of training done, for schedules inside a loss (BoW decay)
        self.head_notes: list[str] = []

    # -- masking -------------------------------------------------------------------------------
    def masked_view(self, spans: list[Span], probability: float, rng: np.random.Generator):
        """(corrupted ids, attention mask, labels, boolean masks) for a whole-word mask at
        `probability`, with BERT's 80/10/10 replacement, padded."""
        ids, labels, masks = [], [], []
        for span in spans:
            mask = whole_word_mask(word_groups(span.words), len(span.ids), probability, rng)
            corrupted, label = replace_masked(
                span.ids, mask, self.tokenizer.mask_token_id, self.vocab_size, rng
            )
            ids.append(corrupted)
            labels.append(label)
            masks.append(mask)
        pad_id = self.tokenizer.pad_token_id
        attention = pad([np.ones(len(s.ids), dtype=np.int64) for s in spans], 0)
        return pad(ids, pad_id), attention, pad(labels, -100), masks

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, hidden_states: bool = False):
        return self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=hidden_states,
            return_dict=True,
        )

    def corrupt(self, pairs: list[tuple[Span, Span]], rng: np.random.Generator) -> dict[str, Any]:
        raise NotImplementedError

    def forward(self, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def new_decoder_layers(self, count: int) -> nn.ModuleList:
        """Fresh head layers initialised as BertPreTrainedModel._init_weights does (the
        Condenser / CoT-MAE / RetroMAE code: `c_head.apply(self._init_weights)`)."""
        return nn.ModuleList([DecoderLayer(self.encoder.config) for _ in range(count)])

    def decoder_embeddings(self):
        embeddings = getattr(self.encoder, "embeddings", None)
        if embeddings is None:
            raise MaebenchError(
                f"objective '{self.name}' needs a BERT-style encoder with an `embeddings` module; "
                f"{type(self.encoder).__name__} has none"
            )
        return embeddings


def cosine_decay(progress: float, final: float) -> float:
    """1 -> `final` along half a cosine (bowdpr's --bow_factor_cosine_decay_to)."""
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))

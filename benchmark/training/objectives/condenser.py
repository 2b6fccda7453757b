"""Condenser (luyug/Condenser modeling.py): a fresh 2-layer head reads [last-layer CLS;
layer-`skip_from` token states] and predicts the same masked tokens; loss = head MLM +
backbone MLM (--late_mlm). The head is discarded; only the backbone is saved."""

from __future__ import annotations

import torch

from benchmark.training.objectives.base import Objective, flatten, mlm_loss


def resolve_skip_from(published: int, layers: int) -> int:
    """skip_from is 6 of BERT-base's 12 layers; on a shallower or deeper encoder keep the same
    fraction of depth (6 of 12 -> 3 of 6), never the last layer (that would be no bottleneck)."""
    return max(1, min(layers - 1, round(published * layers / 12)))


class Condenser(Objective):
    name = "condenser"
    batch_separable = True

    def __init__(self, encoder, head, tokenizer, params) -> None:
        super().__init__(encoder, head, tokenizer, params)
        layers = encoder.config.num_hidden_layers
        self.skip_from = resolve_skip_from(int(params["skip_from"]), layers)
        params["skip_from_resolved"] = self.skip_from
        self.c_head = self.new_decoder_layers(int(params["decoder_layers"]))
        self.head_notes.append(
            f"{len(self.c_head)}-layer Condenser head initialised fresh (BERT init), reads layer "
            f"{self.skip_from} of {layers} (published skip_from {params['skip_from']} of 12)"
        )

    def corrupt(self, pairs, rng):
        ids, attention, labels, _ = self.masked_view(flatten(pairs), self.params["encoder_mask"], rng)
        return {"input_ids": ids, "attention_mask": attention, "labels": labels}

    def condenser_losses(self, batch):
        out = self.encode(batch["input_ids"], batch["attention_mask"], hidden_states=True)
        cls = out.hidden_states[-1][:, :1]
        hidden = torch.cat([cls, out.hidden_states[self.skip_from][:, 1:]], dim=1)
        visible = batch["attention_mask"].bool()[:, None, :]
        for layer in self.c_head:
            hidden = layer(hidden, hidden, visible)
        head = mlm_loss(self.head, hidden, batch["labels"])
        late = mlm_loss(self.head, out.hidden_states[-1], batch["labels"])
        return out, head, late

    def forward(self, batch):
        _, head, late = self.condenser_losses(batch)
        loss = head + late
        return loss, {"head_mlm": float(head.detach()), "mlm": float(late.detach())}

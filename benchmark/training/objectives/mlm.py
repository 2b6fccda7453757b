"""Plain masked language modelling: the control arm (continued BERT pre-training)."""

from __future__ import annotations

from benchmark.training.objectives.base import Objective, flatten, mlm_loss


class MLM(Objective):
    name = "mlm"
    batch_separable = True

    def corrupt(self, pairs, rng):
        ids, attention, labels, _ = self.masked_view(flatten(pairs), self.params["encoder_mask"], rng)
        return {"input_ids": ids, "attention_mask": attention, "labels": labels}

    def forward(self, batch):
        out = self.encode(batch["input_ids"], batch["attention_mask"])
        loss = mlm_loss(self.head, out.last_hidden_state, batch["labels"])
        return loss, {"mlm": float(loss.detach())}

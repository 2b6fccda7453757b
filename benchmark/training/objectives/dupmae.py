"""DupMAE / RetroMAE v2 (staoxiao/RetroMAE src/pretrain/modeling_duplex.py): RetroMAE's encoder
MLM + enhanced decoder, plus bow_loss_weight (0.1) x the cross-entropy between log_softmax of
the max-pool over positions of the encoder's MLM logits and the input's bag of words."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmark.training.objectives.base import bag_of_words, flatten
from benchmark.training.objectives.retromae import RetroMAE


class DupMAE(RetroMAE):
    name = "dupmae"

    def corrupt(self, pairs, rng):
        batch = super().corrupt(pairs, rng)
        batch["bag_of_words"] = bag_of_words(flatten(pairs), self.vocab_size)
        return batch

    def forward(self, batch):
        out = self.encode(batch["input_ids"], batch["attention_mask"])
        hidden = out.last_hidden_state
        logits = self.head(hidden).float()  # all positions: the BoW term max-pools over them
        labels = batch["labels"]
        enc = F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1), ignore_index=-100)
        decoded = self.decode(hidden[:, :1], batch)
        from benchmark.training.objectives.base import mlm_loss

        dec = mlm_loss(self.head, decoded, batch["decoder_labels"])
        pad_bias = (1 - batch["attention_mask"].unsqueeze(-1).float()) * -1000  # as ot_embedding
        pooled = torch.max(logits + pad_bias, dim=1).values
        bow = torch.mean(-torch.sum(batch["bag_of_words"] * F.log_softmax(pooled, dim=-1), dim=1))
        weight = float(self.params["bow_weight"])
        return enc + dec + weight * bow, {"mlm": float(enc.detach()), "decoder": float(dec.detach()),
                                          "bow": float(bow.detach())}

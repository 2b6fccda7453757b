"""DupMAE / RetroMAE v2 (staoxiao/RetroMAE src/pretrain/modeling_duplex.py): RetroMAE's encoder
MLM + enhanced decoder, plus bow_loss_weight (0.1) x the cross-entropy between log_softmax of
the max-pool over the ordinary-token positions of the encoder's MLM logits and the input's bag
of words.

The max-pool leaves out the [CLS] position, as the authors' forward does:
`ot_embedding = self.sparse_embedding(lm_out.logits[:, 1:], encoder_attention_mask[:, 1:])`
(modeling_duplex.py@264346f L77, the forward of L63-82; the method it means is `ot_embedding`,
L53-56, which adds -1000 at padded positions before the max).
DupMAE keeps the two representations apart: [CLS] is trained by the decoder, the "OT" vector
(max-pool of the other tokens' logits) by the BoW loss; pooling over [CLS] too would let the BoW
gradient shape the [CLS] logits (audit section 1.5). The [SEP] position stays in the pool, as theirs.
"""

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

    @staticmethod
    def ot_pool(logits: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, V) max over the positions after [CLS] of the MLM logits, padded positions pushed
        down by 1000 (the authors' ot_embedding over `logits[:, 1:]`, `attention_mask[:, 1:]`)."""
        pad_bias = (1 - attention_mask[:, 1:].unsqueeze(-1).float()) * -1000
        return torch.max(logits[:, 1:] + pad_bias, dim=1).values

    def forward(self, batch):
        out = self.encode(batch["input_ids"], batch["attention_mask"])
        hidden = out.last_hidden_state
        logits = self.head(hidden).float()  # all positions: the BoW term max-pools over them
        labels = batch["labels"]
        enc = F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1), ignore_index=-100)
        decoded = self.decode(hidden[:, :1], batch)
        from benchmark.training.objectives.base import mlm_loss

        dec = mlm_loss(self.head, decoded, batch["decoder_labels"])
        pooled = self.ot_pool(logits, batch["attention_mask"])
        bow = torch.mean(-torch.sum(batch["bag_of_words"] * F.log_softmax(pooled, dim=-1), dim=1))
        weight = float(self.params["bow_weight"])
        return enc + dec + weight * bow, {"mlm": float(enc.detach()), "decoder": float(dec.detach()),
                                          "bow": float(bow.detach())}

"""BoW prediction, "Drop your Decoder" (ma787639046/bowdpr src/bowdpr/pretrain/modeling.py): no
decoder; loss = encoder MLM (0.30) + dec_bow_loss_coef (1.0) x s x BoW loss, where s decays
along a cosine from 1 to 0.1 over training and the BoW loss is the cross-entropy between
log_softmax of the MLM head's logits at the [CLS] position and the input's bag of words.

Bag-of-words distribution: token counts of the original (uncorrupted) content tokens divided
by their number (a distribution summing to 1); the specials are excluded.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.training.objectives.base import Objective, cosine_decay, flatten


class BowPred(Objective):
    name = "bowpred"

    def corrupt(self, pairs, rng):
        spans = flatten(pairs)
        ids, attention, labels, _ = self.masked_view(spans, self.params["encoder_mask"], rng)
        target = torch.zeros(len(spans), self.vocab_size)
        for i, span in enumerate(spans):
            content = span.ids[span.words >= 0]
            tokens, counts = np.unique(content, return_counts=True)
            target[i, torch.from_numpy(tokens)] = torch.from_numpy(counts / counts.sum()).float()
        return {"input_ids": ids, "attention_mask": attention, "labels": labels, "bag_of_words": target}

    def forward(self, batch):
        from benchmark.training.objectives.base import mlm_loss

        out = self.encode(batch["input_ids"], batch["attention_mask"])
        hidden = out.last_hidden_state
        enc = mlm_loss(self.head, hidden, batch["labels"])
        cls_logits = self.head(hidden[:, 0]).float()
        bow = torch.mean(-torch.sum(batch["bag_of_words"] * F.log_softmax(cls_logits, dim=-1), dim=1))
        decay = cosine_decay(self.progress, float(self.params["bow_decay_to"]))
        scale = float(self.params["bow_weight"]) * decay
        return enc + scale * bow, {"mlm": float(enc.detach()), "bow": float(bow.detach()),
                                   "bow_scale": scale}

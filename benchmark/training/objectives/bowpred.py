"""BoW prediction, "Drop your Decoder" (ma787639046/bowdpr src/bowdpr/pretrain/modeling.py): no
decoder; loss = encoder MLM (0.30) + dec_bow_loss_coef (1.0) x s x BoW loss, where s decays
along a cosine from 1 to 0.1 over training and the BoW loss is the cross-entropy between
log_softmax of the MLM head's logits at the [CLS] position and the input's bag of words.

Bag-of-words target: uniform over the DISTINCT content token ids of the original (uncorrupted)
span, each 1/|set|, however often it occurs, as bowdpr's data collator builds it
(bowdpr@5ebd641 src/bowdpr/pretrain/data_utils.py L200-217:
`weights[idx][set(ids) minus {id <= 998}] = 1/|set|`). Their "<= 998" filter removes exactly
[PAD], [unused*], [UNK], [CLS], [SEP] and [MASK] of the BERT vocabulary (no stopwords despite
the helper's name `_is_stopword_or_special_token`); here the specials are the positions without
a word (span.words < 0) plus the tokenizer's [UNK], which works for any vocabulary. Weighting by
count instead (maebench before the audit, section 1.8) gives frequent function words more mass
(35.0 % vs 27.6 % for the 50 commonest SciFact tokens), pulling [CLS] towards the
input-independent corpus unigram distribution.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.training.corpus import Span
from benchmark.training.objectives.base import Objective, cosine_decay, flatten


def distinct_bag_of_words(spans: list[Span], vocab_size: int, unk_id: int | None) -> torch.Tensor:
    """(len(spans), vocab_size): 1/|set| at each distinct content token id of a span (bowdpr's
    target), zero elsewhere; a span with no content token gets an all-zero row (no BoW loss),
    as theirs."""
    out = torch.zeros(len(spans), vocab_size)
    for i, span in enumerate(spans):
        distinct = np.unique(span.ids[span.words >= 0])
        if unk_id is not None:
            distinct = distinct[distinct != unk_id]
        if distinct.size:
            out[i, torch.from_numpy(distinct)] = 1.0 / distinct.size
    return out


class BowPred(Objective):
    name = "bowpred"
    batch_separable = True

    def corrupt(self, pairs, rng):
        spans = flatten(pairs)
        ids, attention, labels, _ = self.masked_view(spans, self.params["encoder_mask"], rng)
        target = distinct_bag_of_words(spans, self.vocab_size, self.tokenizer.unk_token_id)
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

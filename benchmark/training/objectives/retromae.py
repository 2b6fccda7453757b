"""RetroMAE (staoxiao/RetroMAE src/pretrain/modeling.py, data.py, enhancedDecoder.py).

Encoder: whole-word MLM at 0.30 on the corrupted text. Decoder: one fresh BertLayerForDecoder;
query stream = embeddings(inputs_embeds=[CLS]) i.e. the encoder's [CLS] vector + position (+
type) embeddings + LayerNorm; keys/values = [CLS; embeddings of the *unmasked* input]; it
predicts every token except the specials. Enhanced decoding: row i of the attention mask hides a
whole-word mask sampled at the decoder rate (one of min(len, 256) samples) plus token i itself.
Loss = encoder MLM + decoder loss, unweighted. The decoder shares the encoder's MLM head.
"""

from __future__ import annotations

import numpy as np
import torch

from benchmark.training.masking import whole_word_mask, word_groups
from benchmark.training.objectives.base import Objective, flatten, mlm_loss, pad

MASK_SAMPLES = 256


def enhanced_visibility(span, probability: float, rng: np.random.Generator,
                        samples: int = MASK_SAMPLES) -> np.ndarray:
    """(L, L) bool: True where row i may attend. Row i = not(sampled mask ∪ {i})."""
    length = len(span.ids)
    groups = word_groups(span.words)
    pool = np.stack([whole_word_mask(groups, length, probability, rng)
                     for _ in range(min(length, samples))])
    rows = pool[rng.integers(0, len(pool), size=length)]
    rows[np.arange(length), np.arange(length)] = True
    return ~rows


class RetroMAE(Objective):
    name = "retromae"
    batch_separable = True
    needs_decoder_mask = True

    def __init__(self, encoder, head, tokenizer, params) -> None:
        super().__init__(encoder, head, tokenizer, params)
        self.decoder_embeddings()  # refuse a non-BERT encoder up front
        self.c_head = self.new_decoder_layers(1)[0]
        self.head_notes.append("1-layer enhanced decoder initialised fresh (BERT init), shares the "
                               "encoder's embeddings and MLM head")

    def corrupt(self, pairs, rng):
        spans = flatten(pairs)
        ids, attention, labels, _ = self.masked_view(spans, self.params["encoder_mask"], rng)
        width = ids.shape[1]
        visible = np.zeros((len(spans), width, width), dtype=bool)
        for i, span in enumerate(spans):
            n = len(span.ids)
            visible[i, :n, :n] = enhanced_visibility(span, self.params["decoder_mask"], rng,
                                                     int(self.params.get("mask_samples") or MASK_SAMPLES))
        dec_labels = [np.where(s.words >= 0, s.ids, -100) for s in spans]
        return {
            "input_ids": ids, "attention_mask": attention, "labels": labels,
            "decoder_input_ids": pad([s.ids for s in spans], self.tokenizer.pad_token_id),
            "decoder_visible": torch.from_numpy(visible),
            "decoder_labels": pad(dec_labels, -100),
        }

    def decode(self, cls: torch.Tensor, batch) -> torch.Tensor:
        """Decoder states (B, L, H) from the encoder's [CLS] (B, 1, H) and the batch."""
        embeddings = self.decoder_embeddings()
        tokens = embeddings(input_ids=batch["decoder_input_ids"])
        keys = torch.cat([cls, tokens[:, 1:]], dim=1)
        query = embeddings(inputs_embeds=cls.expand(-1, keys.shape[1], -1))
        return self.c_head(query, keys, batch["decoder_visible"])

    def forward(self, batch):
        out = self.encode(batch["input_ids"], batch["attention_mask"])
        hidden = out.last_hidden_state
        decoded = self.decode(hidden[:, :1], batch)
        dec = mlm_loss(self.head, decoded, batch["decoder_labels"])
        enc = mlm_loss(self.head, hidden, batch["labels"])
        return enc + dec, {"mlm": float(enc.detach()), "decoder": float(dec.detach())}

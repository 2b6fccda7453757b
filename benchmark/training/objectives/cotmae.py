"""CoT-MAE (caskcsg/ir cotmae/modeling.py, data.py): encoder MLM on span A (0.30); a fresh
2-layer self-attention decoder reads [CLS(A); embeddings of the neighbouring span B masked at
0.45] and reconstructs B's masked tokens; loss = encoder MLM + head_mlm_coef (1.0) x decoder
MLM. Each span of a pair is both A (encoded) and B (decoded from its partner's [CLS])."""

from __future__ import annotations

import torch

from benchmark.training.objectives.base import Objective, flatten, mlm_loss


class CoTMAE(Objective):
    name = "cotmae"
    batch_separable = True

    def __init__(self, encoder, head, tokenizer, params) -> None:
        super().__init__(encoder, head, tokenizer, params)
        self.decoder_embeddings()
        self.c_head = self.new_decoder_layers(int(params["decoder_layers"]))
        self.head_notes.append(f"{len(self.c_head)}-layer CoT-MAE decoder initialised fresh (BERT "
                               "init: c_head.apply(_init_weights)), shares embeddings and MLM head")

    def corrupt(self, pairs, rng):
        spans = flatten(pairs)
        ids, attention, labels, _ = self.masked_view(spans, self.params["encoder_mask"], rng)
        dec_ids, dec_attention, dec_labels, _ = self.masked_view(spans, self.params["decoder_mask"], rng)
        partner = torch.arange(len(spans)).view(-1, 2).flip(1).reshape(-1)  # A<->B
        return {
            "input_ids": ids, "attention_mask": attention, "labels": labels,
            "decoder_input_ids": dec_ids[partner], "decoder_attention_mask": dec_attention[partner],
            "decoder_labels": dec_labels[partner],
        }

    def decode(self, cls: torch.Tensor, batch) -> torch.Tensor:
        tokens = self.decoder_embeddings()(input_ids=batch["decoder_input_ids"])
        hidden = torch.cat([cls, tokens[:, 1:]], dim=1)
        visible = batch["decoder_attention_mask"].bool()[:, None, :]
        for layer in self.c_head:
            hidden = layer(hidden, hidden, visible)
        return hidden

    def forward(self, batch):
        out = self.encode(batch["input_ids"], batch["attention_mask"])
        hidden = out.last_hidden_state
        dec = mlm_loss(self.head, self.decode(hidden[:, :1], batch), batch["decoder_labels"])
        enc = mlm_loss(self.head, hidden, batch["labels"])
        coef = float(self.params["head_mlm_coef"])
        return enc + coef * dec, {"mlm": float(enc.detach()), "decoder": float(dec.detach())}

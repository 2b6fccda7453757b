"""SimLM's replaced language modelling (microsoft/unilm simlm/src/models/rlm.py,
collators/rlm_collator.py): a frozen ELECTRA generator samples replacements for the masked
positions; the encoder reads a 30%-replaced text, the decoder a 50%-replaced one whose mask
contains the encoder's; both predict the original token at every non-special position. The
decoder is a copy of the encoder's last 2 layers reading [CLS; decoder-input embeddings].
Loss = decoder + encoder (+ 0.2 x generator MLM, which is zero for a frozen generator).

Without generator weights this objective cannot run: a one-line error says what is missing.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from benchmark.core.errors import ModelLoadError
from benchmark.training.masking import extend_mask, whole_word_mask, word_groups
from benchmark.training.objectives.base import DecoderLayer, Objective, flatten, mlm_loss, pad


def load_generator(checkpoint: str | None, vocab_size: int):
    """The frozen generator (any masked LM sharing the init's vocabulary)."""
    if not checkpoint:
        raise ModelLoadError("objective simlm needs a frozen ELECTRA generator; the recipe names none")
    from transformers import AutoModelForMaskedLM

    from benchmark.catalog.weights import resolve_checkpoint

    source, _ = resolve_checkpoint(checkpoint, None)
    try:
        generator = AutoModelForMaskedLM.from_pretrained(source)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"objective simlm needs the frozen ELECTRA generator weights '{checkpoint}', which are "
            "not reachable here (offline or not in the Hugging Face cache); pass --generator "
            "<folder of google/electra-base-generator or another masked LM with the init's vocabulary>"
        ) from exc
    if generator.config.vocab_size != vocab_size:
        raise ModelLoadError(
            f"simlm generator '{checkpoint}' has vocabulary {generator.config.vocab_size}, the "
            f"encoder {vocab_size}: they must share one tokenizer"
        )
    generator.eval().requires_grad_(False)
    return generator


class SimLM(Objective):
    name = "simlm"
    batch_separable = True

    def __init__(self, encoder, head, tokenizer, params) -> None:
        super().__init__(encoder, head, tokenizer, params)
        self.decoder_embeddings()
        self.generator = load_generator(params.get("generator"), self.vocab_size)
        count = int(params["decoder_layers"])
        layers = self.encoder.encoder.layer[-count:]
        self.c_head = torch.nn.ModuleList()
        for layer in layers:
            decoder = DecoderLayer(encoder.config)
            decoder.load_state_dict(copy.deepcopy(layer).state_dict())
            self.c_head.append(decoder)
        self.head_notes.append(f"{count}-layer decoder copied from the encoder's last {count} layers; "
                               f"frozen generator {params.get('generator')}")

    @torch.no_grad()
    def _replace(self, ids: torch.Tensor, masks: torch.Tensor, attention: torch.Tensor,
                 rng: np.random.Generator) -> torch.Tensor:
        device = next(self.generator.parameters()).device
        gen_input = ids.masked_fill(masks, self.tokenizer.mask_token_id).to(device)
        logits = self.generator(input_ids=gen_input, attention_mask=attention.to(device)).logits
        seed = torch.Generator(device=device).manual_seed(int(rng.integers(2**31)))
        flat = torch.softmax(logits[masks.to(device)].float(), dim=-1)
        sampled = torch.multinomial(flat, 1, generator=seed).squeeze(-1).cpu()
        out = ids.clone()
        out[masks] = sampled
        return out

    def corrupt(self, pairs, rng):
        spans = flatten(pairs)
        enc_masks, dec_masks = [], []
        for span in spans:
            groups = word_groups(span.words)
            enc = whole_word_mask(groups, len(span.ids), self.params["encoder_mask"], rng)
            enc_masks.append(enc)
            dec_masks.append(extend_mask(groups, enc, self.params["decoder_mask"], rng))
        ids = pad([s.ids for s in spans], self.tokenizer.pad_token_id)
        attention = pad([np.ones(len(s.ids), dtype=np.int64) for s in spans], 0)
        enc_mask = pad(enc_masks, 0).bool()
        dec_mask = pad(dec_masks, 0).bool()
        labels = pad([np.where(s.words >= 0, s.ids, -100) for s in spans], -100)
        return {
            "input_ids": self._replace(ids, enc_mask, attention, rng), "attention_mask": attention,
            "labels": labels, "decoder_input_ids": self._replace(ids, dec_mask, attention, rng),
        }

    def forward(self, batch):
        out = self.encode(batch["input_ids"], batch["attention_mask"])
        hidden = out.last_hidden_state
        tokens = self.decoder_embeddings()(input_ids=batch["decoder_input_ids"])
        decoded = torch.cat([hidden[:, :1], tokens[:, 1:]], dim=1)
        visible = batch["attention_mask"].bool()[:, None, :]
        for layer in self.c_head:
            decoded = layer(decoded, decoded, visible)
        enc = mlm_loss(self.head, hidden, batch["labels"])
        dec = mlm_loss(self.head, decoded, batch["labels"])
        return enc + dec, {"mlm": float(enc.detach()), "decoder": float(dec.detach())}

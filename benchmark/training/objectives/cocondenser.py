"""coCondenser (luyug/Condenser CoCondenserForPretraining): Condenser + a span-level
contrastive loss; the two spans of a document are each other's positive, all other spans in
the batch are negatives; raw dot product of last-layer [CLS], no temperature."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from benchmark.training.objectives.condenser import Condenser


class CoCondenser(Condenser):
    name = "cocondenser"
    batch_separable = False  # in-batch negatives: the whole batch meets in the loss

    def forward(self, batch):
        out, head, late = self.condenser_losses(batch)
        cls = out.hidden_states[-1][:, 0]
        scores = cls @ cls.T
        scores = scores.masked_fill(torch.eye(len(cls), dtype=torch.bool, device=cls.device),
                                    float("-inf"))
        # spans are laid out [A0, B0, A1, B1, ...]: the positive of 2k is 2k+1 and vice versa
        target = torch.arange(len(cls), device=cls.device).view(-1, 2).flip(1).reshape(-1)
        contrastive = F.cross_entropy(scores.float(), target)
        loss = head + late + contrastive
        return loss, {"head_mlm": float(head.detach()), "mlm": float(late.detach()),
                      "contrastive": float(contrastive.detach())}

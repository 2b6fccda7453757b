"""The batch sampler of fine-tuning: rows in dataset order.

negatives.plan_epochs already shuffles every epoch with the seed, so the trainer must read the
rows as they are (its default would shuffle them again). A module-level class, not a closure,
because the trainer pickles its arguments into every checkpoint. Imports sentence-transformers
at module level: import this module only where training starts.
"""

from __future__ import annotations

from sentence_transformers.base.sampler import DefaultBatchSampler
from torch.utils.data import SequentialSampler


class SequentialBatchSampler(DefaultBatchSampler):
    def __init__(self, dataset, batch_size: int, drop_last: bool, valid_label_columns=None,
                 generator=None, seed: int = 0) -> None:
        super().__init__(SequentialSampler(dataset), batch_size=batch_size, drop_last=drop_last,
                         valid_label_columns=valid_label_columns, generator=generator, seed=seed)

"""Random positive/negative subsampling of assigned boxes (MMDetection's ``RandomSampler``)."""

from __future__ import annotations

import torch
from torch import Tensor

from lightdet.models.ops.assigner import NEGATIVE


class RandomSampler:
    """Draws at most ``num`` boxes, up to ``int(num * pos_fraction)`` positives and negatives for the rest.

    Draws use the global torch generator, so ``torch.manual_seed`` makes them reproducible.
    """

    def __init__(self, num: int, pos_fraction: float) -> None:
        if num < 1 or not 0.0 <= pos_fraction <= 1.0:
            raise ValueError(
                f"RandomSampler: need num >= 1 and 0 <= pos_fraction <= 1, got {num}, {pos_fraction}"
            )
        self.num = num
        self.pos_fraction = pos_fraction

    def sample(self, gt_index: Tensor) -> tuple[Tensor, Tensor]:
        """``gt_index [N]`` from an assigner -> ``(positive indices [P], negative indices [Q])``.

        ``P <= int(num * pos_fraction)`` and ``P + Q <= num``.
        """
        pos = torch.nonzero(gt_index >= 0).squeeze(1)
        neg = torch.nonzero(gt_index == NEGATIVE).squeeze(1)
        num_pos = min(int(self.num * self.pos_fraction), pos.numel())
        num_neg = min(self.num - num_pos, neg.numel())
        pos = pos[torch.randperm(pos.numel(), device=pos.device)[:num_pos]]
        neg = neg[torch.randperm(neg.numel(), device=neg.device)[:num_neg]]
        return pos, neg

    def __repr__(self) -> str:
        return f"RandomSampler(num={self.num}, pos_fraction={self.pos_fraction})"

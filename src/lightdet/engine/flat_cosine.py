"""Flat-then-cosine lr decay (RTMDet's, and YOLOX's "no aug" tail): constant, then half a cosine per iteration."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class FlatCosineDecay:
    """1 until epoch ``flat_epochs``, then a per-iteration half cosine down to ``min_lr_ratio`` at the end.

    MMDetection's RTMDet recipe: ``CosineAnnealingLR(begin=150, end=300, eta_min=0.05 * lr,
    convert_to_iter_based=True)`` after a constant lr, i.e. ``FlatCosineDecay(150, 0.05)`` with
    ``max_epochs=300``. A decay policy of :func:`lightdet.engine.build_warmup_scheduler`.

    Args:
        flat_epochs: epochs at the full lr (the cosine starts at iteration ``flat_epochs * iters_per_epoch``).
        min_lr_ratio: the end value, relative to the initial lr.
    """

    flat_epochs: int
    min_lr_ratio: float = 0.05

    def __post_init__(self) -> None:
        if self.flat_epochs < 0 or not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(
                f"FlatCosineDecay: flat_epochs={self.flat_epochs} must be >= 0 and min_lr_ratio="
                f"{self.min_lr_ratio} in [0, 1]"
            )
        self.flat_epochs, self.min_lr_ratio = int(self.flat_epochs), float(self.min_lr_ratio)

    def __call__(self, it: int, *, iters_per_epoch: int, max_epochs: int) -> float:
        start, end = self.flat_epochs * iters_per_epoch, max_epochs * iters_per_epoch
        if it < start or end <= start:
            return 1.0
        progress = min(it - start, end - start) / (end - start)
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

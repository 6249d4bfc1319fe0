"""Cross-entropy classification loss, softmax (one label per row) or sigmoid (independent binary logits)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from lightdet.models.losses.reduction import check_reduction, weight_reduce


class CrossEntropyLoss(nn.Module):
    """Softmax or sigmoid cross-entropy.

    * softmax (``use_sigmoid=False``): ``pred [N, C]`` logits, ``target int64 [N]`` class indices;
      element-wise loss ``[N]``.
    * sigmoid (``use_sigmoid=True``): ``pred`` logits of any shape, ``target`` float of the same shape in
      ``[0, 1]`` (binary cross-entropy per element, e.g. RPN objectness ``[N]``).

    ``forward(pred, target, weight=None, avg_factor=None)``: see :func:`weight_reduce` for the reduction.
    """

    def __init__(
        self, use_sigmoid: bool = False, *, loss_weight: float = 1.0, reduction: str = "mean"
    ) -> None:
        super().__init__()
        self.use_sigmoid = use_sigmoid
        self.loss_weight = loss_weight
        self.reduction = check_reduction("CrossEntropyLoss", reduction)

    def forward(
        self, pred: Tensor, target: Tensor, weight: Tensor | None = None, avg_factor: float | None = None
    ) -> Tensor:
        if self.use_sigmoid:
            if target.shape != pred.shape:
                raise ValueError(
                    f"CrossEntropyLoss(use_sigmoid=True): target {tuple(target.shape)} "
                    f"!= pred {tuple(pred.shape)}"
                )
            loss = F.binary_cross_entropy_with_logits(pred, target.to(pred.dtype), reduction="none")
        else:
            loss = F.cross_entropy(pred, target, reduction="none")
        return self.loss_weight * weight_reduce(loss, weight, self.reduction, avg_factor)

    def extra_repr(self) -> str:
        return f"use_sigmoid={self.use_sigmoid}, loss_weight={self.loss_weight}, reduction={self.reduction!r}"

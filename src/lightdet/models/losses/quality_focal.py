"""Quality focal loss (Li et al. 2020, Generalized Focal Loss): focal BCE towards soft (IoU) class targets."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from lightdet.models.losses.focal import binary_targets
from lightdet.models.losses.reduction import check_reduction, weight_reduce


def quality_focal_loss(logits: Tensor, soft_targets: Tensor, beta: float = 2.0) -> Tensor:
    """``sum_c BCE(x_c, t_c) * |t_c - sigmoid(x_c)| ** beta`` over the last (class) dimension.

    Args:
        logits: ``[..., C]`` sigmoid logits.
        soft_targets: ``[..., C]`` targets in ``[0, 1]``: the quality (e.g. IoU) at a positive's class, 0
            elsewhere.

    Returns:
        ``[...]``: the loss per sample, summed over classes.
    """
    bce = F.binary_cross_entropy_with_logits(logits, soft_targets, reduction="none")
    return (bce * (soft_targets - logits.sigmoid()).abs().pow(beta)).sum(-1)


class QualityFocalLoss(nn.Module):
    """:func:`quality_focal_loss` with lightdet's weighting and reduction (MMDetection's ``QualityFocalLoss``).

    Args:
        beta: the modulating exponent (RTMDet and GFL: 2).
        loss_weight, reduction: as in every lightdet loss; ``mean`` with ``avg_factor`` divides the sum.

    ``forward(pred [N, C] logits, target, weight=None, avg_factor=None)``: ``target`` float ``[N, C]`` soft
    targets, or int64 ``[N]`` labels (``C`` = background) for hard 0/1 targets; ``weight`` ``[N]``.
    """

    def __init__(self, beta: float = 2.0, *, loss_weight: float = 1.0, reduction: str = "mean") -> None:
        super().__init__()
        if beta < 0:
            raise ValueError(f"QualityFocalLoss: beta must be >= 0, got {beta}")
        self.beta = beta
        self.loss_weight = loss_weight
        self.reduction = check_reduction("QualityFocalLoss", reduction)

    def forward(
        self, pred: Tensor, target: Tensor, weight: Tensor | None = None, avg_factor: float | None = None
    ) -> Tensor:
        loss = quality_focal_loss(pred, binary_targets(pred, target, "QualityFocalLoss"), self.beta)  # [N]
        return self.loss_weight * weight_reduce(loss, weight, self.reduction, avg_factor)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, loss_weight={self.loss_weight}, reduction={self.reduction!r}"

"""Sigmoid focal loss (Lin et al. 2017) for dense classification heads."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import sigmoid_focal_loss

from lightdet.models.losses.reduction import check_reduction, weight_reduce


def binary_targets(pred: Tensor, target: Tensor, owner: str) -> Tensor:
    """Per-class binary targets for sigmoid logits ``pred [N, C]``.

    ``target`` is either ``int64 [N]`` labels in ``0..C`` (``C`` = background: an all-zero row) or a float
    ``[N, C]`` tensor of targets in ``[0, 1]``.
    """
    if pred.dim() != 2:
        raise ValueError(f"{owner}: pred must be [N, C] logits, got {tuple(pred.shape)}")
    if target.shape == pred.shape and target.is_floating_point():
        return target.to(pred.dtype)
    if target.dtype != torch.int64 or target.shape != pred.shape[:1]:
        raise ValueError(
            f"{owner}: target must be int64 [N={pred.shape[0]}] labels (C={pred.shape[1]} is background) or "
            f"float [N, C] like pred, got {target.dtype} {tuple(target.shape)}"
        )
    # one_hot over C + 1 columns then drop the background column.
    return F.one_hot(target, pred.shape[1] + 1)[:, :-1].to(pred.dtype)


def expand_weight(weight: Tensor | None, pred: Tensor) -> Tensor | None:
    """Per-sample weights ``[N]`` broadcast to ``[N, C]``; ``[N, C]`` weights pass through."""
    if weight is None or weight.dim() == pred.dim():
        return weight
    return weight[:, None].expand_as(pred)


class FocalLoss(nn.Module):
    """``-alpha_t (1 - p_t)^gamma log(p_t)`` on independent sigmoid logits (torchvision's implementation).

    Args:
        alpha: weight of positives (``1 - alpha`` for negatives); a negative value disables it.
        gamma: focusing exponent; 0 gives plain binary cross-entropy.
        loss_weight, reduction: as in every lightdet loss; ``mean`` with an ``avg_factor`` (RetinaNet: the
            number of positive anchors) divides the sum by it.

    ``forward(pred [N, C] logits, target, weight=None, avg_factor=None)``: ``target`` as in
    :func:`binary_targets`; ``weight`` ``[N]`` (per anchor, e.g. 0 for ignored anchors) or ``[N, C]``.
    """

    def __init__(
        self, alpha: float = 0.25, gamma: float = 2.0, *, loss_weight: float = 1.0, reduction: str = "mean"
    ) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"FocalLoss: gamma must be >= 0, got {gamma}")
        self.alpha, self.gamma = alpha, gamma
        self.loss_weight = loss_weight
        self.reduction = check_reduction("FocalLoss", reduction)

    def forward(
        self, pred: Tensor, target: Tensor, weight: Tensor | None = None, avg_factor: float | None = None
    ) -> Tensor:
        targets = binary_targets(pred, target, "FocalLoss")
        loss = sigmoid_focal_loss(pred, targets, alpha=self.alpha, gamma=self.gamma, reduction="none")
        return self.loss_weight * weight_reduce(loss, expand_weight(weight, pred), self.reduction, avg_factor)

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, gamma={self.gamma}, loss_weight={self.loss_weight}, "
            f"reduction={self.reduction!r}"
        )

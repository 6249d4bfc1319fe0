"""Box regression losses. Each states in ``target_space`` what the heads must give it.

* ``"deltas"``: predicted and target *encoded* deltas ``[N, 4]`` (L1, smooth L1).
* ``"boxes"``: predicted boxes *decoded* from the deltas, and target boxes, xyxy ``[N, 4]`` (GIoU,
  bounded IoU).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import Tensor, nn
from torchvision.ops import generalized_box_iou_loss

from lightdet.models.losses.reduction import check_reduction, weight_reduce


class _BoxLoss(nn.Module, ABC):
    """Common weighting/reduction; subclasses give the element-wise loss and their ``target_space``."""

    target_space: ClassVar[str]

    def __init__(self, *, loss_weight: float = 1.0, reduction: str = "mean") -> None:
        super().__init__()
        self.loss_weight = loss_weight
        self.reduction = check_reduction(type(self).__name__, reduction)

    @abstractmethod
    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        """Un-reduced loss, ``[N, 4]`` or ``[N]``."""

    def forward(
        self, pred: Tensor, target: Tensor, weight: Tensor | None = None, avg_factor: float | None = None
    ) -> Tensor:
        """``pred``, ``target`` ``[N, 4]`` -> reduced loss (``none``: element-wise, see ``elementwise``)."""
        if pred.shape != target.shape or pred.shape[-1] != 4:
            raise ValueError(
                f"{type(self).__name__}: pred {tuple(pred.shape)} and target {tuple(target.shape)} "
                "must both be [N, 4]"
            )
        loss = self.elementwise(pred, target)
        return self.loss_weight * weight_reduce(loss, weight, self.reduction, avg_factor)

    def extra_repr(self) -> str:
        return f"loss_weight={self.loss_weight}, reduction={self.reduction!r}"


class L1Loss(_BoxLoss):
    """``|pred - target|`` per coordinate, ``[N, 4]``; takes deltas."""

    target_space = "deltas"

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        return (pred - target).abs()


class SmoothL1Loss(_BoxLoss):
    """Huber-style L1: ``0.5 x^2 / beta`` below ``beta``, ``|x| - 0.5 beta`` above, ``[N, 4]``; takes deltas.

    torchvision's Faster R-CNN uses ``beta = 1/9`` at both stages.
    """

    target_space = "deltas"

    def __init__(self, beta: float = 1.0, *, loss_weight: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(loss_weight=loss_weight, reduction=reduction)
        if beta <= 0:
            raise ValueError(f"SmoothL1Loss: beta must be > 0, got {beta}")
        self.beta = beta

    def extra_repr(self) -> str:
        return f"beta={self.beta}, {super().extra_repr()}"

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        diff = (pred - target).abs()
        return torch.where(diff < self.beta, 0.5 * diff * diff / self.beta, diff - 0.5 * self.beta)


class GIoULoss(_BoxLoss):
    """``1 - GIoU`` per box, ``[N]`` (``torchvision.ops.generalized_box_iou_loss``); takes decoded boxes.

    A per-coordinate weight ``[N, 4]`` is averaged to ``[N]``.
    """

    target_space = "boxes"

    def __init__(self, eps: float = 1e-7, *, loss_weight: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(loss_weight=loss_weight, reduction=reduction)
        self.eps = eps

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        return generalized_box_iou_loss(pred, target, reduction="none", eps=self.eps)

    def forward(
        self, pred: Tensor, target: Tensor, weight: Tensor | None = None, avg_factor: float | None = None
    ) -> Tensor:
        if weight is not None and weight.dim() == 2:
            weight = weight.mean(-1)
        return super().forward(pred, target, weight, avg_factor)


class BoundedIoULoss(_BoxLoss):
    """Bounded IoU loss (Tychsen-Smith & Petersson 2018, as in MMDetection), ``[N, 4]``; takes decoded boxes.

    For centre offsets ``dx, dy`` and sizes, with ``eps`` guarding the divisions::

        l_x = 1 - max(0, (w_t - 2|dx|) / (w_t + 2|dx| + eps))
        l_w = 1 - min(w_t / (w_p + eps), w_p / (w_t + eps))

    (``l_y``, ``l_h`` likewise), each passed through smooth L1 with ``beta``. Target terms carry no gradient.
    """

    target_space = "boxes"

    def __init__(
        self, beta: float = 0.2, eps: float = 1e-3, *, loss_weight: float = 1.0, reduction: str = "mean"
    ) -> None:
        super().__init__(loss_weight=loss_weight, reduction=reduction)
        self.beta = beta
        self.eps = eps

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        pred_ctr = (pred[:, :2] + pred[:, 2:]) * 0.5
        pred_wh = pred[:, 2:] - pred[:, :2]
        target = target.detach()
        target_ctr = (target[:, :2] + target[:, 2:]) * 0.5
        target_wh = target[:, 2:] - target[:, :2]
        d = (target_ctr - pred_ctr).abs()
        loss_xy = 1 - ((target_wh - 2 * d) / (target_wh + 2 * d + self.eps)).clamp(min=0)
        loss_wh = 1 - torch.minimum(target_wh / (pred_wh + self.eps), pred_wh / (target_wh + self.eps))
        loss = torch.cat([loss_xy, loss_wh], dim=-1)  # [N, 4]: x, y, w, h
        return torch.where(loss < self.beta, 0.5 * loss * loss / self.beta, loss - 0.5 * self.beta)


def aligned_box_iou(pred: Tensor, target: Tensor, eps: float = 1e-6) -> Tensor:
    """IoU of matching rows: ``[N, 4]`` x ``[N, 4]`` (xyxy) -> ``[N]`` (``eps`` guards an empty union)."""
    lt = torch.maximum(pred[:, :2], target[:, :2])
    rb = torch.minimum(pred[:, 2:], target[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_p = (pred[:, 2:] - pred[:, :2]).clamp(min=0).prod(-1)
    area_t = (target[:, 2:] - target[:, :2]).clamp(min=0).prod(-1)
    return inter / (area_p + area_t - inter).clamp(min=eps)


class IoULoss(_BoxLoss):
    """IoU loss per box, ``[N]``; takes decoded boxes (FCOS, as MMDetection's ``IoULoss``).

    ``mode``: ``"log"`` gives ``-log(max(IoU, eps))`` (UnitBox, MMDetection's default), ``"linear"``
    ``1 - IoU``, ``"square"`` ``1 - IoU^2``. A per-coordinate weight ``[N, 4]`` is averaged to ``[N]``.
    """

    target_space = "boxes"
    MODES = ("log", "linear", "square")

    def __init__(
        self, mode: str = "log", eps: float = 1e-6, *, loss_weight: float = 1.0, reduction: str = "mean"
    ) -> None:
        super().__init__(loss_weight=loss_weight, reduction=reduction)
        if mode not in self.MODES:
            raise ValueError(f"IoULoss: mode must be one of {self.MODES}, got {mode!r}")
        self.mode, self.eps = mode, eps

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, eps={self.eps}, {super().extra_repr()}"

    def elementwise(self, pred: Tensor, target: Tensor) -> Tensor:
        iou = aligned_box_iou(pred, target, self.eps)
        if self.mode == "log":
            return -iou.clamp(min=self.eps).log()
        return 1 - iou if self.mode == "linear" else 1 - iou * iou

    def forward(
        self, pred: Tensor, target: Tensor, weight: Tensor | None = None, avg_factor: float | None = None
    ) -> Tensor:
        if weight is not None and weight.dim() == 2:
            weight = weight.mean(-1)
        return super().forward(pred, target, weight, avg_factor)

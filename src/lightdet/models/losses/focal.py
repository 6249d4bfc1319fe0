"""Sigmoid focal loss (Lin et al. 2017) for dense classification heads."""

from __future__ import annotations

from typing import overload

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torchvision.ops import sigmoid_focal_loss

from lightdet.models.losses.reduction import check_reduction, weight_reduce


@overload
def binary_targets(pred: Tensor, target: Tensor, owner: str) -> Tensor: ...
@overload
def binary_targets(pred: Tensor, target: Tensor, owner: str, *, one_hot: bool) -> Tensor | None: ...
def binary_targets(pred: Tensor, target: Tensor, owner: str, *, one_hot: bool = True) -> Tensor | None:
    """Per-class binary targets for sigmoid logits ``pred [N, C]``.

    ``target`` is either ``int64 [N]`` labels in ``0..C`` (``C`` = background: an all-zero row) or a float
    ``[N, C]`` tensor of targets in ``[0, 1]``. With ``one_hot=False``, valid labels are checked and ``None``
    is returned instead of their ``[N, C]`` one-hot tensor (for losses that use the labels directly).
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
    if target.numel() and bool(((target < 0) | (target > pred.shape[1])).any()):
        raise ValueError(
            f"{owner}: labels must lie in 0..{pred.shape[1]} ({pred.shape[1]} is background), got values from "
            f"{int(target.min())} to {int(target.max())}"
        )
    if not one_hot:
        return None
    # one_hot over C + 1 columns then drop the background column.
    return F.one_hot(target, pred.shape[1] + 1)[:, :-1].to(pred.dtype)


def expand_weight(weight: Tensor | None, pred: Tensor) -> Tensor | None:
    """Per-sample weights ``[N]`` broadcast to ``[N, C]``; ``[N, C]`` weights pass through."""
    if weight is None or weight.dim() == pred.dim():
        return weight
    return weight[:, None].expand_as(pred)


def _label_focal_parts(x: Tensor, alpha: float) -> tuple[Tensor, Tensor, float]:
    """``(p, softplus(x), alpha_neg)`` of logits ``x``: what both passes of :class:`_LabelFocalSum` need."""
    return torch.sigmoid(x), F.softplus(x), (1 - alpha) if alpha >= 0 else 1.0


def _positive_terms(xp: Tensor, alpha: float, gamma: float) -> tuple[Tensor, Tensor]:
    """At the positives' logits ``xp [P]``: their loss as positives minus their loss as negatives, and the
    derivative of that difference (the correction :class:`_LabelFocalSum` adds to its all-negative pass)."""
    p = torch.sigmoid(xp)
    a_pos, a_neg = (alpha, 1 - alpha) if alpha >= 0 else (1.0, 1.0)
    sp_pos, sp_neg = F.softplus(-xp), F.softplus(xp)
    loss = a_pos * (1 - p).pow(gamma) * sp_pos - a_neg * p.pow(gamma) * sp_neg
    grad = -a_pos * (1 - p).pow(gamma) * (gamma * p * sp_pos + (1 - p)) - a_neg * p.pow(gamma) * (
        gamma * (1 - p) * sp_neg + p
    )
    return loss, grad


class _LabelFocalSum(torch.autograd.Function):
    """``sum_i w_i sum_c focal(x_ic, [c == label_i])`` with an analytic gradient, in a few passes over ``x``.

    Every element is first treated as a negative: ``(1 - alpha) p^gamma softplus(x)``, whose derivative is
    ``(1 - alpha) p^gamma (gamma (1 - p) softplus(x) + p)``; the one positive entry of each foreground row is
    then corrected. The result equals torchvision's ``sigmoid_focal_loss`` on one-hot targets without the
    one-hot tensor and without autograd's dozen intermediate ``[N, C]`` tensors (about a tenth of a RetinaNet
    train step on a CPU). Only the logits are saved; the backward recomputes ``p`` and ``softplus(x)``.
    """

    @staticmethod
    def forward(ctx, x: Tensor, labels: Tensor, weight: Tensor, alpha: float, gamma: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, labels, weight)
        ctx.alpha, ctx.gamma = alpha, gamma
        p, sp, a_neg = _label_focal_parts(x, alpha)
        neg = p.mul_(p) if gamma == 2 else p.pow_(gamma)
        total = a_neg * (neg.mul_(sp).sum(1) * weight).sum()
        rows = torch.nonzero(labels < x.shape[1]).squeeze(1)
        pos_loss, _ = _positive_terms(x[rows, labels[rows]], alpha, gamma)
        return total + (pos_loss * weight[rows]).sum()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        x, labels, weight = ctx.saved_tensors
        alpha, gamma = ctx.alpha, ctx.gamma
        p, sp, a_neg = _label_focal_parts(x, alpha)
        inner = torch.addcmul(p, torch.rsub(p, 1), sp, value=gamma)  # gamma (1 - p) softplus(x) + p
        grad = inner.mul_(p.mul_(p) if gamma == 2 else p.pow_(gamma))
        row_scale = weight * (grad_out * a_neg)
        grad.mul_(row_scale[:, None])
        rows = torch.nonzero(labels < x.shape[1]).squeeze(1)
        cols = labels[rows]
        _, pos_grad = _positive_terms(x[rows, cols], alpha, gamma)
        grad.index_put_((rows, cols), pos_grad * weight[rows] * grad_out, accumulate=True)
        return grad, None, None, None, None


def label_focal_sum(x: Tensor, labels: Tensor, weight: Tensor | None, alpha: float, gamma: float) -> Tensor:
    """Summed sigmoid focal loss of logits ``x [N, C]`` against int64 ``labels [N]`` (``C``: background),
    each row weighted by ``weight [N]`` (None: 1); equal to torchvision's ``sigmoid_focal_loss(x,
    one_hot(labels)).sum()`` but several times cheaper (:class:`_LabelFocalSum`)."""
    w = x.new_ones(x.shape[0]) if weight is None else weight.to(x.dtype)
    return _LabelFocalSum.apply(x, labels, w, alpha, gamma)


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
        targets = binary_targets(pred, target, "FocalLoss", one_hot=False)
        if targets is None and self.reduction != "none" and (weight is None or weight.dim() == 1):
            total = label_focal_sum(pred, target, weight, self.alpha, self.gamma)
            if self.reduction == "mean":
                total = total / (avg_factor if avg_factor is not None else max(pred.numel(), 1))
            return self.loss_weight * total
        if targets is None:
            targets = binary_targets(pred, target, "FocalLoss")
        loss = sigmoid_focal_loss(pred, targets, alpha=self.alpha, gamma=self.gamma, reduction="none")
        return self.loss_weight * weight_reduce(loss, expand_weight(weight, pred), self.reduction, avg_factor)

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, gamma={self.gamma}, loss_weight={self.loss_weight}, "
            f"reduction={self.reduction!r}"
        )

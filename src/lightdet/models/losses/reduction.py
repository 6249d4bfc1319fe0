"""Weighting and reduction shared by the loss modules (MMDetection's ``weight_reduce_loss`` semantics)."""

from __future__ import annotations

from torch import Tensor

REDUCTIONS = ("none", "mean", "sum")


def check_reduction(owner: str, reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"{owner}: reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def weight_reduce(loss: Tensor, weight: Tensor | None, reduction: str, avg_factor: float | None) -> Tensor:
    """Multiplies an element-wise ``loss`` by ``weight`` (broadcast) and reduces it.

    ``mean`` divides the sum by ``avg_factor`` when given (e.g. the number of sampled boxes, so that a batch's
    positives and negatives share one normaliser), else takes the plain mean. ``sum`` ignores ``avg_factor``.
    """
    if weight is not None:
        loss = loss * weight
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if avg_factor is None:
        return loss.mean() if loss.numel() else loss.sum()
    return loss.sum() / avg_factor

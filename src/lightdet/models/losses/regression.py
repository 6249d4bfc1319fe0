"""Feeds a box loss what it declares in ``target_space``: encoded deltas, or boxes decoded from them."""

from __future__ import annotations

from torch import Tensor, nn

from lightdet.models.ops.box_coder import DeltaXYWHCoder


def box_regression_loss(
    loss: nn.Module,
    coder: DeltaXYWHCoder,
    deltas: Tensor,
    priors: Tensor,
    gt_boxes: Tensor,
    avg_factor: float,
) -> Tensor:
    """Regression loss of positive samples.

    Args:
        loss: a box loss with ``target_space`` ``"deltas"`` (targets are encoded) or ``"boxes"``
            (predictions are decoded, without clipping, and compared with the ground-truth boxes).
        coder: the head's box coder.
        deltas: predicted deltas ``[P, 4]`` of the positives.
        priors: their anchors / proposals ``[P, 4]``.
        gt_boxes: their matched ground-truth boxes ``[P, 4]``.
        avg_factor: normaliser of the summed loss (the number of sampled boxes).
    """
    space = getattr(loss, "target_space", None)
    if space == "boxes":
        return loss(coder.decode(priors, deltas), gt_boxes, avg_factor=avg_factor)
    if space == "deltas":
        return loss(deltas, coder.encode(priors, gt_boxes), avg_factor=avg_factor)
    raise ValueError(
        f"{type(loss).__name__} does not declare target_space ('deltas' or 'boxes'), so the head cannot tell "
        f"whether to encode targets or decode predictions"
    )

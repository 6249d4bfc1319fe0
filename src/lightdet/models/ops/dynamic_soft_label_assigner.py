"""Dynamic soft-label assignment (RTMDet, Lyu et al. 2022): SimOTA-style dynamic top-k on a soft cost.

For the priors whose point lies strictly inside some ground-truth box (the candidates), the cost of
matching candidate ``v`` to ground truth ``g`` is::

    cost[v, g] = QFL(logits_v, onehot(label_g) * IoU[v, g])        (soft classification cost)
               + iou_weight * -log(IoU[v, g] + 1e-7)                (regression cost)
               + 10 ** (|point_v - centre_g| / stride_v - soft_center_radius)   (soft centre prior)

with ``IoU`` between the candidate's *predicted* box and the ground truth. Each ground truth takes its
``k_g`` cheapest candidates, ``k_g = max(int(sum of its topk largest IoUs), 1)``; a candidate taken by
several keeps the ground truth of least cost (over all ground truths). As MMDetection's
``DynamicSoftLabelAssigner``; crowd (ignored) boxes take no part.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightdet.models.losses.quality_focal import quality_focal_loss
from lightdet.models.ops.assigner import NEGATIVE

IOU_EPS = 1e-7


def box_overlaps(boxes1: Tensor, boxes2: Tensor, *, aligned: bool = False, eps: float = 1e-6) -> Tensor:
    """IoU of xyxy boxes, MMDetection's ``bbox_overlaps``: areas as given (not clamped), union ``>= eps``.

    ``[N, 4]`` x ``[M, 4]`` -> ``[N, M]``, or with ``aligned`` (``N == M``) -> ``[N]``.
    """
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    if not aligned:
        boxes1, area1 = boxes1[:, None], area1[:, None]
    lt = torch.maximum(boxes1[..., :2], boxes2[..., :2])
    rb = torch.minimum(boxes1[..., 2:], boxes2[..., 2:])
    overlap = (rb - lt).clamp(min=0).prod(-1)
    return overlap / (area1 + area2 - overlap).clamp(min=eps)


def dynamic_k_matching(cost: Tensor, ious: Tensor, topk: int) -> Tensor:
    """SimOTA's dynamic top-k matching of candidates to ground truth.

    Args:
        cost: ``[V, G]`` matching costs.
        ious: ``[V, G]`` IoUs of the candidates' predictions with the ground truth.
        topk: how many of each ground truth's largest IoUs set its ``k``.

    Returns:
        ``int64 [V]``: the matched ground-truth index of each candidate, -1 if none.
    """
    num_valid, num_gt = cost.shape
    top_ious = ious.topk(min(topk, num_valid), dim=0).values  # [k, G]
    ks = top_ious.sum(0).int().clamp(min=1)  # [G]
    order = cost.argsort(dim=0, stable=True)  # [V, G], cheapest first per column
    rank = torch.empty_like(order).scatter_(
        0, order, torch.arange(num_valid, device=cost.device)[:, None].expand_as(order)
    )
    matched = rank < ks[None, :]  # [V, G]
    multiple = matched.sum(1) > 1
    if multiple.any():
        # a candidate chosen by several ground truths keeps the cheapest of all of them
        matched[multiple] = False
        matched[multiple, cost[multiple].argmin(1)] = True
    index = matched.int().argmax(1)
    return torch.where(matched.any(1), index, torch.full_like(index, -1))


class DynamicSoftLabelAssigner:
    """Assigns priors (points) to ground truth from the head's own predictions (module docstring).

    Args:
        topk: candidates whose IoUs set each ground truth's dynamic ``k`` (RTMDet: 13).
        soft_center_radius: distance (in strides) at which the centre prior's cost is 1.
        iou_weight: weight of the ``-log IoU`` cost.
    """

    def __init__(self, topk: int = 13, *, soft_center_radius: float = 3.0, iou_weight: float = 3.0) -> None:
        if topk < 1:
            raise ValueError(f"DynamicSoftLabelAssigner: topk must be >= 1, got {topk}")
        self.topk, self.soft_center_radius, self.iou_weight = topk, soft_center_radius, iou_weight

    def __repr__(self) -> str:
        return (
            f"DynamicSoftLabelAssigner(topk={self.topk}, soft_center_radius={self.soft_center_radius}, "
            f"iou_weight={self.iou_weight})"
        )

    def cost_matrix(
        self,
        logits: Tensor,
        boxes: Tensor,
        points: Tensor,
        strides: Tensor,
        gt_boxes: Tensor,
        gt_labels: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """``(cost [V, G], ious [V, G])`` of V candidates (arguments as :meth:`assign`, candidates only)."""
        centres = (gt_boxes[:, :2] + gt_boxes[:, 2:]) / 2
        distance = (points[:, None] - centres[None]).pow(2).sum(-1).sqrt() / strides[:, None]  # [V, G]
        center_cost = torch.pow(10.0, distance - self.soft_center_radius)
        ious = box_overlaps(boxes, gt_boxes)
        iou_cost = -torch.log(ious + IOU_EPS) * self.iou_weight
        onehot = torch.nn.functional.one_hot(gt_labels, logits.shape[-1]).to(ious)  # [G, K]
        soft = onehot[None] * ious[..., None]  # [V, G, K]
        cls_cost = quality_focal_loss(logits[:, None].expand_as(soft), soft)
        return cls_cost + iou_cost + center_cost, ious

    @torch.no_grad()
    def assign(
        self,
        logits: Tensor,
        boxes: Tensor,
        points: Tensor,
        strides: Tensor,
        gt_boxes: Tensor,
        gt_labels: Tensor,
    ) -> Tensor:
        """Matches N priors of one image to its G ground-truth boxes.

        Args:
            logits: ``[N, K]`` class logits of the priors.
            boxes: ``[N, 4]`` boxes the priors predict (xyxy).
            points: ``[N, 2]`` prior points (x, y); strides: ``[N]`` their levels' strides.
            gt_boxes: ``[G, 4]``; gt_labels: ``int64 [G]``.

        Returns:
            ``int64 [N]``: the ground-truth index of positives, :data:`~lightdet.models.ops.NEGATIVE` else.
        """
        gt_index = torch.full((points.shape[0],), NEGATIVE, dtype=torch.int64, device=points.device)
        inside = torch.cat(
            [points[:, None] - gt_boxes[None, :, :2], gt_boxes[None, :, 2:] - points[:, None]], -1
        )
        candidate = (
            (inside.amin(-1) > 0).any(1) if len(gt_boxes) else torch.zeros_like(gt_index, dtype=torch.bool)
        )
        if not candidate.any():
            return gt_index
        cost, ious = self.cost_matrix(
            logits[candidate].float(), boxes[candidate].float(), points[candidate], strides[candidate],
            gt_boxes.float(), gt_labels,
        )  # fmt: skip
        matched = dynamic_k_matching(cost, ious, self.topk)
        gt_index[candidate] = matched.masked_fill(matched < 0, NEGATIVE)
        return gt_index

"""Hungarian matching of DETR predictions to ground truth (``scipy.optimize.linear_sum_assignment``).

The cost is ``class_weight * focal-style class cost + bbox_weight * L1 + giou_weight * (-GIoU)``, computed
for the whole batch at once; the assignment itself runs per image on the CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor
from torchvision.ops import generalized_box_iou

from lightdet.models.detr.box_ops import cxcywh_to_xyxy

Match = tuple[Tensor, Tensor]  # (query indices, ground-truth indices), int64, one per matched pair


def focal_class_cost(logits: Tensor, labels: Tensor, alpha: float = 0.25, gamma: float = 2.0) -> Tensor:
    """``[N, K]`` logits, ``[M]`` labels -> ``[N, M]`` focal-loss difference of predicting vs. not the label."""
    prob = logits.sigmoid()[:, labels]
    neg = (1 - alpha) * prob**gamma * -(1 - prob + 1e-8).log()
    pos = alpha * (1 - prob) ** gamma * -(prob + 1e-8).log()
    return pos - neg


@dataclass(frozen=True)
class HungarianMatcher:
    """One-to-one assignment minimising the weighted class, L1 and GIoU costs (RT-DETR: 2, 5, 2).

    Attributes:
        class_weight, bbox_weight, giou_weight: cost weights.
        alpha, gamma: of the focal class cost.
    """

    class_weight: float = 2.0
    bbox_weight: float = 5.0
    giou_weight: float = 2.0
    alpha: float = 0.25
    gamma: float = 2.0

    def cost(self, logits: Tensor, boxes: Tensor, gt_labels: Tensor, gt_boxes: Tensor) -> Tensor:
        """``[N, K]``, ``[N, 4]`` cxcywh predictions vs. ``[M]``, ``[M, 4]`` cxcywh targets -> ``[N, M]``.

        NaN and infinite costs become the largest float, so they are matched only as a last resort.
        """
        class_cost = focal_class_cost(logits, gt_labels, self.alpha, self.gamma)
        bbox_cost = torch.cdist(boxes, gt_boxes, p=1)
        giou_cost = -generalized_box_iou(cxcywh_to_xyxy(boxes), cxcywh_to_xyxy(gt_boxes))
        cost = self.bbox_weight * bbox_cost + self.class_weight * class_cost + self.giou_weight * giou_cost
        top = torch.finfo(cost.dtype).max
        return torch.nan_to_num(cost, nan=top, posinf=top, neginf=top)

    @torch.no_grad()
    def __call__(
        self, logits: Tensor, boxes: Tensor, gt_labels: Sequence[Tensor], gt_boxes: Sequence[Tensor]
    ) -> list[Match]:
        """``logits [B, Q, K]``, ``boxes [B, Q, 4]`` -> per image the matched (query, ground-truth) indices."""
        b, q = logits.shape[:2]
        sizes = [len(t) for t in gt_labels]
        if sum(sizes) == 0:
            empty = torch.zeros(0, dtype=torch.int64)
            return [(empty, empty) for _ in sizes]
        cost = self.cost(logits.flatten(0, 1), boxes.flatten(0, 1), torch.cat(list(gt_labels)), torch.cat(list(gt_boxes)))
        per_image = cost.view(b, q, -1).cpu().split(sizes, -1)
        matches = [linear_sum_assignment(c[i].numpy()) for i, c in enumerate(per_image)]
        return [(torch.as_tensor(r, dtype=torch.int64), torch.as_tensor(c, dtype=torch.int64)) for r, c in matches]

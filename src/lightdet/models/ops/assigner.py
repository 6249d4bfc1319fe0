"""Max-IoU assignment of candidate boxes (anchors, proposals) to ground truth, as MMDetection's assigner."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.ops import box_iou

from lightdet.models.ops.boxes import box_iof

NEGATIVE = -1
IGNORED = -2


@dataclass
class AssignResult:
    """Per candidate box: the matched ground-truth index, or :data:`NEGATIVE` / :data:`IGNORED`.

    Attributes:
        gt_index: ``int64 [N]``; ``>= 0`` positive (index into the ground truth), ``-1`` negative,
            ``-2`` neither.
        max_iou: ``float [N]``, the best IoU with any ground-truth box (0 without ground truth, -1 if
            ignored).
    """

    gt_index: Tensor
    max_iou: Tensor

    @property
    def positive(self) -> Tensor:
        return self.gt_index >= 0

    @property
    def negative(self) -> Tensor:
        return self.gt_index == NEGATIVE


class MaxIoUAssigner:
    """Assigns each box to its highest-IoU ground truth if the IoU is high enough.

    Rules, in order: a box whose intersection-over-its-own-area (IoF) with an ignored region exceeds
    ``ignore_iof_thr`` is ignored; a box with max IoU ``< neg_iou_thr`` is negative; ``>= pos_iou_thr`` is
    positive. With ``match_low_quality``, every box that attains a ground truth's best IoU (if that IoU is
    ``>= min_pos_iou`` and positive) is made positive for that ground truth, the later ground truth winning
    ties (MMDetection's ``gt_max_assign_all``); this keeps small objects from having no positive at all.

    Args:
        pos_iou_thr: minimum IoU of a positive.
        neg_iou_thr: IoU below which a box is negative (boxes in between are ignored).
        min_pos_iou: minimum IoU of a low-quality match.
        match_low_quality: enable the low-quality rule (RPN: on; R-CNN: off).
        ignore_iof_thr: IoF threshold with ignored (crowd) boxes; negative disables ignoring by region.
    """

    def __init__(
        self,
        pos_iou_thr: float,
        neg_iou_thr: float,
        *,
        min_pos_iou: float = 0.0,
        match_low_quality: bool = True,
        ignore_iof_thr: float = 0.5,
    ) -> None:
        if neg_iou_thr > pos_iou_thr:
            raise ValueError(f"MaxIoUAssigner: neg_iou_thr {neg_iou_thr} exceeds pos_iou_thr {pos_iou_thr}")
        self.pos_iou_thr = pos_iou_thr
        self.neg_iou_thr = neg_iou_thr
        self.min_pos_iou = min_pos_iou
        self.match_low_quality = match_low_quality
        self.ignore_iof_thr = ignore_iof_thr

    def assign(self, boxes: Tensor, gt_boxes: Tensor, ignore_boxes: Tensor | None = None) -> AssignResult:
        """``boxes [N, 4]`` against ``gt_boxes [G, 4]`` and optional ignored regions ``[M, 4]`` -> result."""
        n, g = boxes.shape[0], gt_boxes.shape[0]
        ignored = self._ignored(boxes, ignore_boxes)
        if g == 0 or n == 0:
            gt_index = torch.full((n,), NEGATIVE, dtype=torch.int64, device=boxes.device)
            gt_index[ignored] = IGNORED
            max_iou = torch.zeros(n, device=boxes.device).masked_fill(ignored, -1.0)
            return AssignResult(gt_index, max_iou)
        iou = box_iou(gt_boxes, boxes)  # [G, N]
        iou[:, ignored] = -1.0
        max_iou, argmax = iou.max(dim=0)
        gt_index = torch.full((n,), IGNORED, dtype=torch.int64, device=boxes.device)
        gt_index[(max_iou >= 0) & (max_iou < self.neg_iou_thr)] = NEGATIVE
        pos = max_iou >= self.pos_iou_thr
        gt_index[pos] = argmax[pos]
        if self.match_low_quality:
            gt_best = iou.max(dim=1).values[:, None]  # [G, 1]
            qualified = (gt_best >= self.min_pos_iou) & (gt_best > 0)
            hits = (iou == gt_best) & qualified  # [G, N]
            has = hits.any(dim=0)
            last_gt = g - 1 - hits.flip(0).to(torch.uint8).argmax(dim=0)
            gt_index[has] = last_gt[has]
        return AssignResult(gt_index, max_iou)

    def _ignored(self, boxes: Tensor, ignore_boxes: Tensor | None) -> Tensor:
        """bool ``[N]``: boxes lying mostly inside an ignored region."""
        if ignore_boxes is None or ignore_boxes.numel() == 0 or self.ignore_iof_thr < 0 or boxes.numel() == 0:
            return torch.zeros(boxes.shape[0], dtype=torch.bool, device=boxes.device)
        return box_iof(boxes, ignore_boxes).max(dim=1).values > self.ignore_iof_thr

    def __repr__(self) -> str:
        return (
            f"MaxIoUAssigner(pos_iou_thr={self.pos_iou_thr}, neg_iou_thr={self.neg_iou_thr}, "
            f"min_pos_iou={self.min_pos_iou}, match_low_quality={self.match_low_quality}, "
            f"ignore_iof_thr={self.ignore_iof_thr})"
        )

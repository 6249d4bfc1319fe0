"""Class-aware non-maximum suppression: torchvision's batched NMS and a soft-NMS (Bodla et al. 2017).

Both are callables ``(boxes [N, 4], scores [N], labels [N], max_num) -> (keep [K], scores [K])`` with ``keep``
sorted by decreasing (possibly decayed) score, so a head can take either from its config.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import batched_nms, box_iou


class NMS:
    """Hard NMS per label (``torchvision.ops.batched_nms``): drops boxes with IoU ``> iou_threshold``."""

    def __init__(self, iou_threshold: float = 0.5) -> None:
        self.iou_threshold = iou_threshold

    def __call__(
        self, boxes: Tensor, scores: Tensor, labels: Tensor, max_num: int = -1
    ) -> tuple[Tensor, Tensor]:
        keep = batched_nms(boxes, scores, labels, self.iou_threshold)
        if max_num >= 0:
            keep = keep[:max_num]
        return keep, scores[keep]

    def __repr__(self) -> str:
        return f"NMS(iou_threshold={self.iou_threshold})"


class SoftNMS:
    """Soft-NMS per label: instead of removing overlapping boxes, decays their scores.

    ``linear``: ``s *= 1 - iou`` where ``iou > iou_threshold``; ``gaussian``: ``s *= exp(-iou^2 / sigma)``.
    Boxes whose score falls below ``min_score`` are dropped. Each pick's score is final once picked and all
    others only decrease, so the first ``max_num`` picks are the top ``max_num`` results: the loop runs over
    output detections, each step vectorised over all boxes.
    """

    def __init__(
        self,
        iou_threshold: float = 0.3,
        *,
        method: str = "linear",
        sigma: float = 0.5,
        min_score: float = 1e-3,
    ) -> None:
        if method not in ("linear", "gaussian"):
            raise ValueError(f"SoftNMS method must be 'linear' or 'gaussian', got {method!r}")
        self.iou_threshold = iou_threshold
        self.method = method
        self.sigma = sigma
        self.min_score = min_score

    def _decay(self, iou: Tensor) -> Tensor:
        if self.method == "linear":
            return torch.where(iou > self.iou_threshold, 1.0 - iou, torch.ones_like(iou))
        return torch.exp(-(iou * iou) / self.sigma)

    def __call__(
        self, boxes: Tensor, scores: Tensor, labels: Tensor, max_num: int = -1
    ) -> tuple[Tensor, Tensor]:
        n = boxes.shape[0]
        limit = n if max_num < 0 else min(n, max_num)
        # Shift each label's boxes to a disjoint region so that boxes of different labels never overlap.
        offsets = labels.to(boxes) * (boxes.max() + 1 if n else 0)
        shifted = boxes + offsets[:, None]
        current = scores.clone()
        alive = current >= self.min_score
        keep, kept_scores = [], []
        for _ in range(limit):
            masked = torch.where(alive, current, torch.full_like(current, -1.0))
            best = int(masked.argmax())
            if not bool(alive[best]):
                break
            keep.append(best)
            kept_scores.append(current[best])
            alive[best] = False
            current = current * self._decay(box_iou(shifted[best : best + 1], shifted)[0])
            alive &= current >= self.min_score
        if not keep:
            return torch.zeros(0, dtype=torch.int64, device=boxes.device), scores.new_zeros(0)
        return torch.tensor(keep, dtype=torch.int64, device=boxes.device), torch.stack(kept_scores)

    def __repr__(self) -> str:
        return (
            f"SoftNMS(iou_threshold={self.iou_threshold}, method={self.method!r}, sigma={self.sigma}, "
            f"min_score={self.min_score})"
        )

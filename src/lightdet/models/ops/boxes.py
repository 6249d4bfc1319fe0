"""Pairwise box geometry not provided by ``torchvision.ops`` and small box filters (xyxy, absolute pixels)."""

from __future__ import annotations

from torch import Tensor


def box_iof(boxes: Tensor, regions: Tensor) -> Tensor:
    """Intersection over the *first* box's area: ``[N, 4]`` x ``[M, 4]`` -> ``[N, M]``.

    Used to find boxes (anchors, proposals) that lie mostly inside ignored regions. Degenerate boxes of zero
    area give 0.
    """
    lt = boxes[:, None, :2].maximum(regions[None, :, :2])
    rb = boxes[:, None, 2:].minimum(regions[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0).prod(-1)
    return inter / area.clamp(min=1e-6)[:, None]


def large_box_mask(boxes: Tensor, min_size: float) -> Tensor:
    """``[..., 4]`` -> bool ``[...]``: True where width and height are both strictly above ``min_size``.

    MMDetection drops proposals with ``w <= min_bbox_size``; torchvision drops ``w < min_size``. The two
    differ only for a box exactly ``min_size`` wide, so one strict rule serves both presets.
    """
    wh = boxes[..., 2:] - boxes[..., :2]
    return (wh > min_size).all(-1)

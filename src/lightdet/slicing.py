"""Sliced inference: a large image cut into overlapping tiles, each predicted at the model's scale, merged.

A detector trained on images of a few hundred pixels shrinks a 4000-pixel photo to that size, and objects of
ten pixels vanish. Predicting on tiles (each resized by the test pipeline like any image) keeps them large
enough; the full image is predicted as well, so that objects bigger than a tile are still found whole.

A tile's detections that touch one of its *inner* edges (an edge that is not the image border) are dropped:
the object was cut, and the neighbouring tile (they overlap by ``overlap * size`` pixels) or the full image
sees it whole. The remaining detections are merged by class-wise NMS (or weighted box fusion).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from lightdet.models.tta import MergeMethod, merge_detections
from lightdet.structures import Detections

__all__ = ["Window", "tile_windows", "predict_sliced"]

Window = tuple[int, int, int, int]
"""A tile ``(x0, y0, x1, y1)`` in pixels of the full image (x1, y1 exclusive)."""

#: A detection this close (pixels) to an inner tile edge counts as cut by it.
CUT_MARGIN = 2.0


def _starts(length: int, size: int, stride: int) -> list[int]:
    """Tile origins along one axis: every ``stride`` pixels, the last tile flush with the end."""
    if length <= size:
        return [0]
    count = math.ceil((length - size) / stride) + 1
    return sorted({min(i * stride, length - size) for i in range(count)})


def tile_windows(height: int, width: int, size: int, overlap: float = 0.2) -> list[Window]:
    """Overlapping ``size x size`` tiles covering an image (smaller along an axis shorter than ``size``).

    Args:
        size: the tile side in pixels of the full image.
        overlap: the share of a tile that its neighbour covers too, in ``[0, 1)``.
    """
    if size < 1:
        raise ValueError(f"slice size must be a positive number of pixels, got {size}")
    if not 0 <= overlap < 1:
        raise ValueError(f"slice overlap must lie in [0, 1), got {overlap}")
    stride = max(1, round(size * (1 - overlap)))
    return [
        (x0, y0, min(x0 + size, width), min(y0 + size, height))
        for y0 in _starts(height, size, stride)
        for x0 in _starts(width, size, stride)
    ]


def _inner_edge_cut(boxes: Tensor, window: Window, height: int, width: int) -> Tensor:
    """``bool [N]``: boxes (full-image pixels) touching an edge of ``window`` that is not the image border."""
    x0, y0, x1, y1 = window
    cut = torch.zeros(len(boxes), dtype=torch.bool, device=boxes.device)
    if x0 > 0:
        cut |= boxes[:, 0] <= x0 + CUT_MARGIN
    if y0 > 0:
        cut |= boxes[:, 1] <= y0 + CUT_MARGIN
    if x1 < width:
        cut |= boxes[:, 2] >= x1 - CUT_MARGIN
    if y1 < height:
        cut |= boxes[:, 3] >= y1 - CUT_MARGIN
    return cut


def _to_full_image(detections: Detections, window: Window, height: int, width: int) -> Detections:
    """A tile's detections moved into full-image pixels (masks padded to the full size)."""
    x0, y0, x1, y1 = window
    boxes = detections.boxes + detections.boxes.new_tensor([x0, y0, x0, y0])
    masks = detections.masks
    if masks is not None:
        masks = F.pad(masks.to(torch.uint8), (x0, width - x1, y0, height - y1)).bool()
    return Detections(boxes=boxes, scores=detections.scores, labels=detections.labels, masks=masks)


def predict_sliced(
    predict: Callable[[list[Tensor]], Sequence[Detections]],
    image: Tensor,
    size: int,
    *,
    overlap: float = 0.2,
    merge: MergeMethod = "nms",
    iou_thr: float = 0.5,
) -> Detections:
    """Detections of one large image from its tiles and the image itself, merged.

    Args:
        predict: ``uint8 [3, h, w]`` images -> their detections, each in its own input's pixels (e.g. a
            :class:`~lightdet.inference.Predictor`'s ``predict``).
        image: ``uint8 [3, H, W]``.
        size, overlap: the tiles (:func:`tile_windows`).
        merge, iou_thr: how the tiles' and the full image's detections are merged
            (:func:`~lightdet.models.tta.merge_detections`, each object counted as seen once); every merged
            box is kept.

    Returns:
        Detections in ``image``'s pixels.
    """
    height, width = int(image.shape[1]), int(image.shape[2])
    windows = [w for w in tile_windows(height, width, size, overlap) if w != (0, 0, width, height)]
    crops = [image[:, y0:y1, x0:x1] for x0, y0, x1, y1 in windows]
    found = list(predict([*crops, image]))
    parts = [found[-1]]
    for window, detections in zip(windows, found[:-1]):
        moved = _to_full_image(detections, window, height, width)
        parts.append(moved[~_inner_edge_cut(moved.boxes, window, height, width)])
    total = sum(len(p) for p in parts)
    return merge_detections(parts, method=merge, iou_thr=iou_thr, max_per_img=max(total, 1), num_views=1)

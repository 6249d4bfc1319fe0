"""Whole-sample operations shared by the augmentation steps: select instances, crop or pad onto a canvas,
stack the instances of several samples.

Every function returns a new :class:`~lightdet.structures.DetSample` (tensors are never written in place,
so a sample kept in a step's cache stays as it was) with boxes, labels, ignore flags and masks indexed
together, and boxes clipped to the image. Masks are :class:`~lightdet.structures.CroppedMasks`, moved by
their own methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import Tensor

from lightdet.structures import CroppedMasks, DetSample, ImageMeta, clip_boxes

__all__ = [
    "Fill",
    "fill_pixels",
    "large_boxes",
    "paste",
    "place",
    "stack_instances",
    "take",
]

Fill = int | Sequence[int]
"""A fill colour: one value for the three channels, or ``(r, g, b)``."""


def fill_pixels(fill: Fill, size: tuple[int, int]) -> Tensor:
    """A ``uint8 [3, H, W]`` image of colour ``fill``, ``size = (H, W)``."""
    values = [int(fill)] * 3 if isinstance(fill, (int, float)) else [int(v) for v in fill]
    if len(values) != 3 or not all(0 <= v <= 255 for v in values):
        raise ValueError(f"a fill colour is one value or three values in 0..255, got {fill!r}")
    colour = torch.tensor(values, dtype=torch.uint8).view(3, 1, 1)
    return colour.expand(3, *size).contiguous()


def take(sample: DetSample, keep: Tensor) -> DetSample:
    """The sample with only the instances ``keep`` (``bool [N]`` or ``int64`` indices)."""
    masks = None if sample.masks is None else sample.masks[keep]
    return replace(
        sample,
        boxes=sample.boxes[keep],
        labels=sample.labels[keep],
        ignore=sample.ignore[keep],  # type: ignore[index]
        masks=masks,
    )


def large_boxes(boxes: Tensor, min_size: float) -> Tensor:
    """``bool [N]``: boxes ``[N, 4]`` whose width and height are both at least ``min_size`` (and positive)."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return (w >= min_size) & (h >= min_size) & (w > 0) & (h > 0)


def paste(canvas: Tensor, sample: DetSample, offset: Sequence[int]) -> DetSample:
    """Writes ``sample``'s pixels into ``canvas`` (``uint8 [3, H, W]``, modified) with the sample's top-left
    corner at ``offset = (x, y)`` of it (may be negative or beyond: only the overlap is written).

    Returns the sample on the canvas: ``image`` is ``canvas``, boxes move by the offset and are clipped
    to the canvas, masks move the same way and are cut at its border. Nothing is dropped (a box off the
    canvas becomes empty: :func:`large_boxes` finds it).
    """
    x, y = int(offset[0]), int(offset[1])
    h, w = sample.meta.img_size
    size = (int(canvas.shape[1]), int(canvas.shape[2]))
    # the overlap in canvas pixels
    x1, y1, x2, y2 = max(x, 0), max(y, 0), min(x + w, size[1]), min(y + h, size[0])
    if x2 > x1 and y2 > y1:
        canvas[:, y1:y2, x1:x2] = sample.image[:, y1 - y : y2 - y, x1 - x : x2 - x]
    masks = None if sample.masks is None else sample.masks.translate((x, y), size)
    boxes = clip_boxes(sample.boxes + sample.boxes.new_tensor([x, y, x, y]), size)
    return replace(sample, image=canvas, boxes=boxes, masks=masks, meta=replace(sample.meta, img_size=size))


def place(sample: DetSample, window: Sequence[int], fill: Fill = 0) -> DetSample:
    """The part of ``sample`` under ``window = (x1, y1, x2, y2)``, as an image of ``(y2 - y1, x2 - x1)`` pixels.

    The window is in the sample's integer pixels and may reach outside it: pixels it covers outside
    the sample are ``fill`` (masks 0). So a window inside the image is a crop, one around it a pad or a
    zoom-out. Boxes move by ``(-x1, -y1)`` and are clipped to the new image (see :func:`paste`).
    """
    x1, y1, x2, y2 = (int(v) for v in window)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"place: empty window {tuple(window)}")
    return paste(fill_pixels(fill, (y2 - y1, x2 - x1)), sample, (-x1, -y1))


def stack_instances(samples: Sequence[DetSample], image: Tensor, meta: ImageMeta) -> DetSample:
    """One sample with ``image`` and ``meta`` holding the instances of all ``samples``, in order.

    The samples' boxes and masks must already be in ``image``'s pixels. Masks are kept when every
    sample has them.

    Raises:
        ValueError: when some samples have masks and others have not.
    """
    with_masks = [s.masks is not None for s in samples]
    if any(with_masks) and not all(with_masks):
        raise ValueError(
            "cannot mix samples with masks and samples without (is with_mask set for every dataset?)"
        )
    masks = CroppedMasks.cat([s.masks for s in samples]) if all(with_masks) else None  # type: ignore[misc]
    return DetSample(
        image=image,
        boxes=torch.cat([s.boxes for s in samples]),
        labels=torch.cat([s.labels for s in samples]),
        ignore=torch.cat([s.ignore for s in samples]),  # type: ignore[misc]
        masks=masks,
        meta=meta,
    )

"""Tiny samples for the augmentation tests (imported by name; conftest only holds fixtures)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from lightdet.structures import DetSample, ImageMeta


def box_sample(
    h: int,
    w: int,
    boxes: Sequence[Sequence[int]] = (),
    *,
    value: int | None = None,
    labels: Sequence[int] | None = None,
    ignore: Sequence[bool] | None = None,
    image_id: int = 1,
    seed: int = 0,
    masks: bool = True,
) -> DetSample:
    """An ``h x w`` sample whose integer ``boxes`` are filled exactly by their masks.

    The image is ``value`` everywhere (random pixels when None); labels default to ``0..N-1`` and
    ignore flags to False.
    """
    n = len(boxes)
    if value is None:
        image = torch.randint(
            0, 256, (3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)
        )
    else:
        image = torch.full((3, h, w), value, dtype=torch.uint8)
    mask = torch.zeros((n, h, w), dtype=torch.uint8)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        mask[i, y1:y2, x1:x2] = 1
    return DetSample(
        image=image,
        boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        labels=torch.tensor(list(range(n)) if labels is None else labels, dtype=torch.int64),
        ignore=torch.tensor([False] * n if ignore is None else ignore, dtype=torch.bool),
        masks=mask if masks else None,
        meta=ImageMeta(image_id=image_id, file_name=f"{image_id}.jpg", ori_size=(h, w), img_size=(h, w)),
    )


def blob_sample(h: int, w: int, boxes: Sequence[Sequence[int]], *, label_base: int = 0, seed: int = 0) -> DetSample:
    """:func:`box_sample` whose masks are random pixels (about 60 %) of each box, labels ``label_base + i``
    (distinct, so that an instance can be found by its label after a step drops some)."""
    g = torch.Generator().manual_seed(seed + 1000)
    masks = torch.zeros((len(boxes), h, w), dtype=torch.uint8)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        masks[i, y1:y2, x1:x2] = (torch.rand(y2 - y1, x2 - x1, generator=g) < 0.6).to(torch.uint8)
    labels = [label_base + i for i in range(len(boxes))]
    return replace(box_sample(h, w, boxes, labels=labels, seed=seed), masks=masks)


def on_canvas(bitmaps: torch.Tensor, window: Sequence[int]) -> torch.Tensor:
    """``[N, H, W]`` bitmaps under ``window = (x1, y1, x2, y2)`` (which may reach outside: zeros there)."""
    x1, y1, x2, y2 = window
    n, h, w = bitmaps.shape
    out = torch.zeros((n, y2 - y1, x2 - x1), dtype=bitmaps.dtype)
    cx1, cy1, cx2, cy2 = max(x1, 0), max(y1, 0), min(x2, w), min(y2, h)
    if cx2 > cx1 and cy2 > cy1:
        out[:, cy1 - y1 : cy2 - y1, cx1 - x1 : cx2 - x1] = bitmaps[:, cy1:cy2, cx1:cx2]
    return out


def nearest_warp(bitmaps: torch.Tensor, matrix: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """Whole-image nearest-neighbour warp: output pixel (x, y) takes input pixel floor(M^-1 (x + .5, y + .5))."""
    inv = torch.linalg.inv(torch.as_tensor(matrix, dtype=torch.float64))
    cx = torch.arange(size[1], dtype=torch.float64)[None, :] + 0.5
    cy = torch.arange(size[0], dtype=torch.float64)[:, None] + 0.5
    sx = (inv[0, 0] * cx + (inv[0, 1] * cy + inv[0, 2])).floor().long()
    sy = (inv[1, 0] * cx + (inv[1, 1] * cy + inv[1, 2])).floor().long()
    h, w = bitmaps.shape[1:]
    valid = (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)
    return bitmaps[:, sy.clamp(0, h - 1), sx.clamp(0, w - 1)] * valid


def by_label(sample: DetSample, bitmaps: dict[int, torch.Tensor]) -> torch.Tensor:
    """The reference bitmaps of ``sample``'s instances, found by their (distinct) labels."""
    h, w = sample.meta.img_size
    return torch.stack([bitmaps[label] for label in sample.labels.tolist()]) if len(sample) else torch.zeros(
        (0, h, w), dtype=torch.uint8
    )


def mask_box(mask: torch.Tensor) -> list[int] | None:
    """The xyxy box of a mask's nonzero pixels (pixel i spans [i, i + 1)); None for an empty mask."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    if len(xs) == 0:
        return None
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def same_sample(a: DetSample, b: DetSample) -> bool:
    """Equal images, boxes, labels, ignore flags, masks and sizes."""
    masks_equal = (a.masks is None and b.masks is None) or (
        a.masks is not None and b.masks is not None and a.masks.equal(b.masks)
    )
    return (
        a.meta.img_size == b.meta.img_size
        and torch.equal(a.image, b.image)
        and torch.equal(a.boxes, b.boxes)
        and torch.equal(a.labels, b.labels)
        and torch.equal(a.ignore, b.ignore)
        and masks_equal
    )

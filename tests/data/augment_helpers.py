"""Tiny samples for the augmentation tests (imported by name; conftest only holds fixtures)."""

from __future__ import annotations

from collections.abc import Sequence

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


def mask_box(mask: torch.Tensor) -> list[int] | None:
    """The xyxy box of a mask's nonzero pixels (pixel i spans [i, i + 1)); None for an empty mask."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    if len(xs) == 0:
        return None
    return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def same_sample(a: DetSample, b: DetSample) -> bool:
    """Equal images, boxes, labels, ignore flags, masks and sizes."""
    masks_equal = (a.masks is None and b.masks is None) or (
        a.masks is not None and b.masks is not None and torch.equal(a.masks, b.masks)
    )
    return (
        a.meta.img_size == b.meta.img_size
        and torch.equal(a.image, b.image)
        and torch.equal(a.boxes, b.boxes)
        and torch.equal(a.labels, b.labels)
        and torch.equal(a.ignore, b.ignore)
        and masks_equal
    )

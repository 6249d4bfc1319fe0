"""YOLOX's random affine augmentation: rotation, scaling, shear and translation in one warp.

The image warp runs in OpenCV (bilinear); masks are warped over their regions by OpenCV's nearest-neighbour
rule (:meth:`~lightdet.structures.CroppedMasks.warp_affine`); boxes become the enclosing boxes of
their warped corners (MMDetection's and YOLOX's rule), clipped, and are dropped below ``min_size``.
Random numbers come from :func:`lightdet.data.streams.augment_generator`. A training step:
``meta.scale_factor`` is left as it is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from lightdet.data.sample_ops import Fill, large_boxes, take
from lightdet.data.streams import uniform
from lightdet.structures import DetSample, clip_boxes

__all__ = ["RandomAffine", "affine_matrix", "affine_sample"]


def _pair(value: Sequence[float], what: str) -> tuple[float, float]:
    if len(value) != 2 or not all(v > 0 for v in value) or value[0] > value[1]:
        raise ValueError(f"{what} must be two positive numbers (low <= high), got {list(value)}")
    return float(value[0]), float(value[1])


def affine_matrix(
    in_size: tuple[int, int],
    out_size: tuple[int, int],
    angle: float,
    scale: float,
    shear: tuple[float, float],
    centre: tuple[float, float],
) -> np.ndarray:
    """``float64 [3, 3]``: the input's centre to the origin, rotate ``angle`` degrees (counter-clockwise
    on screen) and scale, shear (degrees along x, y), then the origin to ``centre`` (fractions of the
    output width and height)."""
    (h, w), (oh, ow) = in_size, out_size
    a = math.radians(angle)
    to_origin = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1]], dtype=np.float64)
    c, s = math.cos(a) * scale, math.sin(a) * scale
    rotate = np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]], dtype=np.float64)
    tx, ty = math.tan(math.radians(shear[0])), math.tan(math.radians(shear[1]))
    shear_m = np.array([[1, tx, 0], [ty, 1, 0], [0, 0, 1]], dtype=np.float64)
    to_output = np.array([[1, 0, centre[0] * ow], [0, 1, centre[1] * oh], [0, 0, 1]], dtype=np.float64)
    return to_output @ shear_m @ rotate @ to_origin


def _warp_image(image: np.ndarray, matrix: np.ndarray, out_size: tuple[int, int], fill: Fill) -> np.ndarray:
    """OpenCV's bilinear ``warpAffine`` of an ``[H, W, 3]`` image (``fill`` where nothing maps).

    ``matrix`` maps continuous coordinates (pixel ``i`` spans ``[i, i + 1)``, the boxes' convention);
    OpenCV puts pixel centres at integers, so the matrix is conjugated by a half-pixel shift.
    """
    import cv2  # OpenCV comes with albumentations; imported here so that light tools do not pay for it

    half = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]], dtype=np.float64)
    matrix = np.linalg.inv(half) @ matrix @ half
    colour = [int(fill)] * 3 if isinstance(fill, (int, float)) else [int(v) for v in fill]
    out = cv2.warpAffine(
        np.ascontiguousarray(image), matrix[:2], (out_size[1], out_size[0]), flags=cv2.INTER_LINEAR,
        borderValue=(*colour, 0),
    )
    return out.reshape(*out_size, 3)


def affine_sample(
    sample: DetSample, matrix: np.ndarray, out_size: tuple[int, int], fill: Fill = 114, min_size: float = 1.0
) -> DetSample:
    """Warps ``sample`` by the ``[3, 3]`` affine ``matrix`` onto an image of ``out_size = (H, W)``.

    The image is interpolated bilinearly (``fill`` outside), masks by nearest neighbour; each box becomes
    the enclosing box of its four warped corners, clipped, and is dropped below ``min_size``.
    """
    image = _warp_image(sample.image.permute(1, 2, 0).numpy(), matrix, out_size, fill)
    b = sample.boxes
    corners = torch.stack([b[:, [0, 1]], b[:, [2, 1]], b[:, [0, 3]], b[:, [2, 3]]], dim=1)  # [N, 4, 2]
    m = torch.as_tensor(matrix[:2], dtype=torch.float32)
    warped = corners @ m[:, :2].T + m[:, 2]  # [N, 4, 2]
    boxes = clip_boxes(torch.cat([warped.amin(dim=1), warped.amax(dim=1)], dim=1), out_size)
    masks = None if sample.masks is None else sample.masks.warp_affine(matrix, out_size)
    out = replace(
        sample,
        image=torch.from_numpy(image).permute(2, 0, 1).contiguous(),
        boxes=boxes,
        masks=masks,
        meta=replace(sample.meta, img_size=out_size),
    )
    return take(out, large_boxes(boxes, min_size))


class RandomAffine:
    """YOLOX's random affine: rotation, scaling, shear and translation in one warp.

    The input's centre goes to a point drawn within ``max_translate_ratio`` of the output's centre
    (YOLOX's and ultralytics' convention). The output is the input's size plus ``2 * border``
    (after a 2x mosaic, ``border = (-width / 2, -height / 2)`` of one tile gives back the tile size).

    Args:
        max_rotate_degree: the angle is drawn from ``[-max, max]``.
        max_translate_ratio: the shift of the centre, as a fraction of the output size.
        scaling_ratio_range: the scale is drawn from this range.
        max_shear_degree: shear angles along x and y are drawn from ``[-max, max]``.
        border: ``(x, y)`` pixels added to (negative: removed from) each side.
        fill: colour of the pixels the warp brings in.
        min_size: boxes narrower or lower than this after the warp are dropped.
    """

    def __init__(
        self,
        *,
        max_rotate_degree: float = 10.0,
        max_translate_ratio: float = 0.1,
        scaling_ratio_range: Sequence[float] = (0.5, 1.5),
        max_shear_degree: float = 2.0,
        border: Sequence[int] = (0, 0),
        fill: Fill = 114,
        min_size: float = 1.0,
    ) -> None:
        self.max_rotate_degree, self.max_shear_degree = float(max_rotate_degree), float(max_shear_degree)
        self.max_translate_ratio = float(max_translate_ratio)
        self.scaling_ratio_range = _pair(scaling_ratio_range, "RandomAffine: scaling_ratio_range")
        self.border = (int(border[0]), int(border[1]))
        self.fill, self.min_size = fill, min_size

    def __call__(self, sample: DetSample) -> DetSample:
        h, w = sample.meta.img_size
        out_size = (h + 2 * self.border[1], w + 2 * self.border[0])
        if min(out_size) < 1:
            raise ValueError(f"RandomAffine: border {self.border} leaves nothing of a {w}x{h} image")
        r, t, s = self.max_rotate_degree, self.max_translate_ratio, self.max_shear_degree
        matrix = affine_matrix(
            (h, w),
            out_size,
            angle=uniform(-r, r),
            scale=uniform(*self.scaling_ratio_range),
            shear=(uniform(-s, s), uniform(-s, s)),
            centre=(uniform(0.5 - t, 0.5 + t), uniform(0.5 - t, 0.5 + t)),
        )
        return affine_sample(sample, matrix, out_size, self.fill, self.min_size)

    def __repr__(self) -> str:
        return (
            f"RandomAffine(max_rotate_degree={self.max_rotate_degree}, scaling_ratio_range="
            f"{self.scaling_ratio_range}, border={self.border})"
        )

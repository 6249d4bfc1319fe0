"""Geometric augmentation steps of the modern recipes: random resize range, crop, pad, zoom-out, IoU crop
and box sanitising (the random affine warp is in :mod:`lightdet.data.affine`).

Each step is a ``DetSample -> DetSample`` pipeline step (see :mod:`lightdet.data.transforms`) that keeps
boxes, labels, ignore flags and masks indexed together: a box that a step drops takes its label, ignore
flag and mask with it. Random numbers come from :func:`lightdet.data.streams.augment_generator` (seeded
per run, rank and worker). Each step draws its parameters and calls a pure function of them, which is
what the tests check by hand.

Steps that move pixels without rescaling them (crop, pad, zoom-out, IoU crop) leave ``meta.scale_factor``
as it is; :class:`RandomResize` updates it. These steps belong in training pipelines, whose predictions
are never mapped back to the file's pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch
from torch import Tensor
from torchvision.ops import box_iou

from lightdet.data.sample_ops import Fill, large_boxes, place, take
from lightdet.data.streams import chance, randint, uniform
from lightdet.data.transforms import rescale_size, resize_sample
from lightdet.structures import DetSample, clip_boxes

__all__ = [
    "Pad",
    "RandomCrop",
    "RandomIoUCrop",
    "RandomResize",
    "RandomZoomOut",
    "SanitizeBoundingBoxes",
    "centres_inside",
    "crop_sample",
    "iou_crop",
]


def _pair(value: Sequence[float], what: str, positive: bool = True) -> tuple[float, float]:
    if len(value) != 2 or (positive and not all(v > 0 for v in value)) or value[0] > value[1]:
        raise ValueError(
            f"{what} must be two {'positive ' if positive else ''}numbers (low <= high), got {list(value)}"
        )
    return float(value[0]), float(value[1])


def _size(value: Sequence[int], what: str) -> tuple[int, int]:
    if len(value) != 2 or not all(int(v) > 0 for v in value):
        raise ValueError(f"{what} must be two positive integers (width, height), got {list(value)}")
    return int(value[0]), int(value[1])


class RandomResize:
    """Resizes to ``scale`` times a ratio drawn from ``ratio_range`` (MMDetection's ``RandomResize``).

    Args:
        scale: ``(width, height)`` at ratio 1, e.g. ``(1280, 1280)`` after a 640 mosaic.
        ratio_range: the ratio is drawn uniformly from ``[low, high)``; the target is
            ``(int(width * ratio), int(height * ratio))``.
        keep_ratio: as :class:`~lightdet.data.Resize`: the largest factor that keeps the image within the
            target; else stretch to it.
    """

    def __init__(
        self, scale: Sequence[int], ratio_range: Sequence[float] = (0.5, 2.0), *, keep_ratio: bool = True
    ) -> None:
        self.scale = _size(scale, "RandomResize: scale")
        self.ratio_range = _pair(ratio_range, "RandomResize: ratio_range")
        self.keep_ratio = keep_ratio

    def __call__(self, sample: DetSample) -> DetSample:
        ratio = uniform(*self.ratio_range)
        target = (max(1, int(self.scale[0] * ratio)), max(1, int(self.scale[1] * ratio)))
        h, w = rescale_size(sample.meta.img_size, target, self.keep_ratio)
        return resize_sample(sample, (max(1, h), max(1, w)))

    def __repr__(self) -> str:
        return (
            f"RandomResize(scale={self.scale}, ratio_range={self.ratio_range}, keep_ratio={self.keep_ratio})"
        )


class RandomCrop:
    """Crops a random ``crop_size`` window (MMDetection's ``RandomCrop``, absolute size).

    An image smaller than the window keeps that side whole (a :class:`Pad` may follow). Boxes are
    clipped to the crop; those left narrower or lower than ``min_size`` are dropped.

    Args:
        crop_size: ``(width, height)``.
        min_size: smallest width and height a box keeps after the crop (pixels).
        allow_empty: with False, a window that would leave no box (when the image had some) is drawn
            again, up to ``max_tries`` windows, and the last is kept. MMDetection draws another image
            instead, which a pipeline step cannot do.
        recompute_boxes: boxes from the cropped masks (MMDetection's ``recompute_bbox``; mask datasets).
    """

    def __init__(
        self,
        crop_size: Sequence[int],
        *,
        min_size: float = 1.0,
        allow_empty: bool = False,
        max_tries: int = 10,
        recompute_boxes: bool = False,
    ) -> None:
        self.crop_size = _size(crop_size, "RandomCrop: crop_size")
        if max_tries < 1:
            raise ValueError(f"RandomCrop: max_tries must be >= 1, got {max_tries}")
        self.min_size, self.allow_empty, self.max_tries = min_size, allow_empty, max_tries
        self.recompute_boxes = recompute_boxes

    def _window(self, h: int, w: int) -> tuple[int, int, int, int]:
        cw, ch = min(self.crop_size[0], w), min(self.crop_size[1], h)
        x, y = randint(0, w - cw), randint(0, h - ch)
        return x, y, x + cw, y + ch

    def __call__(self, sample: DetSample) -> DetSample:
        h, w = sample.meta.img_size
        window = self._window(h, w)
        tries = 1 if self.allow_empty or len(sample) == 0 else self.max_tries
        for _ in range(tries - 1):
            if self._keeps_a_box(sample.boxes, window):
                break
            window = self._window(h, w)
        return crop_sample(sample, window, self.min_size, self.recompute_boxes)

    def _keeps_a_box(self, boxes: Tensor, window: tuple[int, int, int, int]) -> bool:
        x1, y1, x2, y2 = window
        moved = clip_boxes(boxes - boxes.new_tensor([x1, y1, x1, y1]), (y2 - y1, x2 - x1))
        return bool(large_boxes(moved, self.min_size).any())

    def __repr__(self) -> str:
        return f"RandomCrop(crop_size={self.crop_size}, min_size={self.min_size}, allow_empty={self.allow_empty})"


def crop_sample(
    sample: DetSample, window: Sequence[int], min_size: float = 1.0, recompute_boxes: bool = False
) -> DetSample:
    """``sample`` cropped to ``window = (x1, y1, x2, y2)``; boxes below ``min_size`` dropped.

    With ``recompute_boxes`` (and masks), the boxes are the cropped masks' tight boxes.
    """
    out = place(sample, window)
    if recompute_boxes and out.masks is not None:
        out = replace(out, boxes=out.masks.tight_boxes())
    return take(out, large_boxes(out.boxes, min_size))


class Pad:
    """Pads the image at the bottom and right to at least ``size`` (MMDetection's ``Pad(size=...)``).

    The padding becomes part of the image (``meta.img_size``), as in MMDetection's RTMDet pipeline,
    where the model sees grey (114) rather than zero borders.

    Args:
        size: ``(width, height)``; a larger side is left as it is.
        fill: the padding colour.
    """

    def __init__(self, size: Sequence[int], fill: Fill = 114) -> None:
        self.size = _size(size, "Pad: size")
        self.fill = fill

    def __call__(self, sample: DetSample) -> DetSample:
        h, w = sample.meta.img_size
        if w >= self.size[0] and h >= self.size[1]:
            return sample
        return place(sample, (0, 0, max(w, self.size[0]), max(h, self.size[1])), self.fill)

    def __repr__(self) -> str:
        return f"Pad(size={self.size}, fill={self.fill})"


class RandomZoomOut:
    """Places the image on a larger canvas (torchvision's ``RandomZoomOut``; SSD's "expand").

    With probability ``prob`` a ratio ``r`` is drawn from ``side_range``, the canvas is
    ``(int(h * r), int(w * r))`` of colour ``fill`` and the image goes to a uniformly drawn position.

    Args:
        fill: canvas colour (RT-DETR's recipe: 0).
        side_range: range of ``r`` (``>= 1``).
        prob: probability of zooming out.
    """

    def __init__(self, fill: Fill = 0, side_range: Sequence[float] = (1.0, 4.0), prob: float = 0.5) -> None:
        self.side_range = _pair(side_range, "RandomZoomOut: side_range")
        if self.side_range[0] < 1.0:
            raise ValueError(f"RandomZoomOut: side_range must start at 1 or above, got {list(side_range)}")
        self.fill, self.prob = fill, prob

    def __call__(self, sample: DetSample) -> DetSample:
        if not chance(self.prob):
            return sample
        h, w = sample.meta.img_size
        r = uniform(*self.side_range)
        cw, ch = int(w * r), int(h * r)
        left, top = int((cw - w) * uniform(0.0, 1.0)), int((ch - h) * uniform(0.0, 1.0))
        return place(sample, (-left, -top, cw - left, ch - top), self.fill)

    def __repr__(self) -> str:
        return f"RandomZoomOut(fill={self.fill}, side_range={self.side_range}, prob={self.prob})"


def centres_inside(boxes: Tensor, window: Sequence[int]) -> Tensor:
    """``bool [N]``: boxes whose centre lies strictly inside ``window = (x1, y1, x2, y2)``."""
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    return (cx > window[0]) & (cx < window[2]) & (cy > window[1]) & (cy < window[3])


def iou_crop(sample: DetSample, window: Sequence[int]) -> DetSample:
    """``sample`` cropped to ``window = (x1, y1, x2, y2)`` as SSD crops: boxes whose centre lies outside the
    window are dropped, the others clipped to it (none dropped for its size)."""
    return place(take(sample, centres_inside(sample.boxes, window)), window)


class RandomIoUCrop:
    """SSD's crop (torchvision's ``RandomIoUCrop``), applied with probability ``prob`` (RT-DETR: 0.8).

    A minimum IoU is drawn from ``sampler_options`` (1.0 means no crop); up to ``trials`` windows of
    ``[min_scale, max_scale]`` times each side and aspect ratio in ``[min_aspect_ratio, max_aspect_ratio]``
    are drawn, and the first one that holds the centre of a box and overlaps one of those boxes with at
    least that IoU is the crop. Boxes whose centres fall outside it are dropped; the others are clipped
    (follow with :class:`SanitizeBoundingBoxes`, as the recipe does). Without boxes nothing is cropped.
    Draws go on until a window is found or 1.0 is drawn, at most ``max_rounds`` times.
    """

    def __init__(
        self,
        *,
        min_scale: float = 0.3,
        max_scale: float = 1.0,
        min_aspect_ratio: float = 0.5,
        max_aspect_ratio: float = 2.0,
        sampler_options: Sequence[float] = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0),
        trials: int = 40,
        prob: float = 0.8,
        max_rounds: int = 100,
    ) -> None:
        self.scale_range = _pair((min_scale, max_scale), "RandomIoUCrop: (min_scale, max_scale)")
        self.aspect_range = _pair((min_aspect_ratio, max_aspect_ratio), "RandomIoUCrop: aspect ratios")
        if not sampler_options:
            raise ValueError("RandomIoUCrop: sampler_options must not be empty")
        self.options = [float(o) for o in sampler_options]
        self.trials, self.prob, self.max_rounds = trials, prob, max_rounds

    def _trial(self, boxes: Tensor, h: int, w: int, min_iou: float) -> tuple[int, int, int, int] | None:
        new_w, new_h = int(w * uniform(*self.scale_range)), int(h * uniform(*self.scale_range))
        if new_w == 0 or new_h == 0 or not self.aspect_range[0] <= new_w / new_h <= self.aspect_range[1]:
            return None
        left, top = int((w - new_w) * uniform(0.0, 1.0)), int((h - new_h) * uniform(0.0, 1.0))
        window = (left, top, left + new_w, top + new_h)
        inside = centres_inside(boxes, window)
        if not inside.any():
            return None
        iou = box_iou(boxes[inside], boxes.new_tensor([window], dtype=torch.float32))
        return window if float(iou.max()) >= min_iou else None

    def find_window(self, sample: DetSample) -> tuple[int, int, int, int] | None:
        """The crop window, or None for no crop."""
        if len(sample) == 0:
            return None
        h, w = sample.meta.img_size
        for _ in range(self.max_rounds):
            min_iou = self.options[randint(0, len(self.options) - 1)]
            if min_iou >= 1.0:
                return None
            for _ in range(self.trials):
                window = self._trial(sample.boxes, h, w, min_iou)
                if window is not None:
                    return window
        return None

    def __call__(self, sample: DetSample) -> DetSample:
        if not chance(self.prob):
            return sample
        window = self.find_window(sample)
        return sample if window is None else iou_crop(sample, window)

    def __repr__(self) -> str:
        return f"RandomIoUCrop(options={self.options}, trials={self.trials}, prob={self.prob})"


class SanitizeBoundingBoxes:
    """Drops boxes narrower or lower than ``min_size`` or of area below ``min_area`` (torchvision's step).

    Boxes are already clipped to the image in lightdet, so out-of-image boxes need no separate check.
    """

    def __init__(self, min_size: float = 1.0, min_area: float = 1.0) -> None:
        self.min_size, self.min_area = float(min_size), float(min_area)

    def __call__(self, sample: DetSample) -> DetSample:
        b = sample.boxes
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        keep = large_boxes(b, self.min_size) & (area >= self.min_area)
        return sample if bool(keep.all()) else take(sample, keep)

    def __repr__(self) -> str:
        return f"SanitizeBoundingBoxes(min_size={self.min_size}, min_area={self.min_area})"

"""Augmentations that need several images: Mosaic, MixUp and Copy-Paste.

Each is a pipeline step with two ways of getting the other images:

* **cached** (MMDetection's ``CachedMosaic`` / ``CachedMixUp``, RTMDet's recipe): called as an ordinary
  step, it keeps the last ``max_cached_images`` samples that reached it in this process (this DataLoader
  worker) and mixes the current sample with ones drawn from that cache. It needs no access to the
  dataset, so it works in any dataset's ``pipeline`` list. Until the cache holds ``num_others + 1``
  samples, samples pass through unchanged.
* **from the dataset** (MMDetection's ``MultiImageMixDataset``, YOLOX's recipe): inside
  :class:`~lightdet.data.MultiImageMixDataset`, the wrapper calls :meth:`mix` with ``num_others`` random
  images of the dataset, loaded by the dataset's own pipeline.

Steps follow the :class:`MixStep` protocol: ``num_others``, ``prob``, ``others_need_boxes`` and
``mix(sample, others)``. Random numbers come from :func:`lightdet.data.streams.augment_generator`; the
geometry of each mix is a pure function of its drawn parameters (:func:`mosaic`, :func:`mixup`,
:func:`copy_paste`). Boxes are clipped to what stays visible and dropped below ``min_size``; labels,
ignore flags and masks go with them. Samples in a cache are never modified (every operation returns
new tensors).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from lightdet.data.sample_ops import (
    Fill,
    fill_pixels,
    large_boxes,
    paste,
    place,
    stack_instances,
    take,
)
from lightdet.data.streams import augment_generator, chance, randint, uniform
from lightdet.data.transforms import hflip_sample, resize_sample
from lightdet.structures import DetSample

__all__ = ["CopyPaste", "MixStep", "MixUp", "Mosaic", "SampleCache", "copy_paste", "mixup", "mosaic"]


@runtime_checkable
class MixStep(Protocol):
    """A pipeline step that combines the current sample with ``num_others`` other samples."""

    num_others: int
    prob: float
    others_need_boxes: bool

    def mix(self, sample: DetSample, others: Sequence[DetSample]) -> DetSample: ...

    def __call__(self, sample: DetSample) -> DetSample: ...


class SampleCache:
    """The samples a step has seen last in this process, at most ``max_size`` of them.

    Args:
        max_size: how many samples are kept.
        random_pop: when full, drop a random sample instead of the oldest.
    """

    def __init__(self, max_size: int, random_pop: bool = True) -> None:
        if max_size < 1:
            raise ValueError(f"SampleCache: max_size must be >= 1, got {max_size}")
        self.max_size, self.random_pop = int(max_size), random_pop
        self._samples: list[DetSample] = []

    def __len__(self) -> int:
        return len(self._samples)

    def push(self, sample: DetSample) -> None:
        self._samples.append(sample)
        if len(self._samples) > self.max_size:
            self._samples.pop(randint(0, len(self._samples) - 1) if self.random_pop else 0)

    def draw(self, k: int, *, with_boxes: bool = False, max_tries: int = 15) -> list[DetSample]:
        """``k`` samples drawn with replacement; with ``with_boxes``, each is drawn again (up to
        ``max_tries`` times) while it has no box."""
        out = []
        for _ in range(k):
            sample = self._samples[randint(0, len(self._samples) - 1)]
            for _ in range(max_tries - 1 if with_boxes else 0):
                if len(sample):
                    break
                sample = self._samples[randint(0, len(self._samples) - 1)]
            out.append(sample)
        return out


def _cached_mix(step: MixStep, cache: SampleCache, sample: DetSample, max_tries: int = 15) -> DetSample:
    """One cached call of ``step``: remember ``sample``, then mix it with cached ones (``step.prob``)."""
    cache.push(sample)
    if len(cache) <= step.num_others or not chance(step.prob):
        return sample
    others = cache.draw(step.num_others, with_boxes=step.others_need_boxes, max_tries=max_tries)
    return step.mix(sample, others)


def mosaic(
    samples: Sequence[DetSample],
    centre: tuple[int, int],
    tile: tuple[int, int],
    fill: Fill = 114,
    min_size: float = 1.0,
) -> DetSample:
    """Four samples on a ``(2 * tile_h, 2 * tile_w)`` canvas, meeting at ``centre = (xc, yc)``.

    Each sample is resized to fit ``tile = (width, height)`` keeping its aspect ratio (sides truncated
    to whole pixels), then placed with a corner at the centre: the first top-left of it, then
    top-right, bottom-left, bottom-right. What falls outside the canvas is cut off; boxes are clipped
    there and dropped below ``min_size``. The result keeps the first sample's ``meta`` (its
    ``img_size`` the canvas, its ``scale_factor`` times the first resize).
    """
    if len(samples) != 4:
        raise ValueError(f"mosaic: takes 4 samples, got {len(samples)}")
    (tw, th), (xc, yc) = tile, centre
    canvas = fill_pixels(fill, (2 * th, 2 * tw))
    parts = []
    for i, sample in enumerate(samples):
        h, w = sample.meta.img_size
        factor = min(th / h, tw / w)
        fitted = resize_sample(sample, (max(1, int(h * factor)), max(1, int(w * factor))))
        h, w = fitted.meta.img_size
        part = paste(canvas, fitted, (xc - w if i % 2 == 0 else xc, yc - h if i < 2 else yc))
        parts.append(take(part, large_boxes(part.boxes, min_size)))
    return stack_instances(parts, canvas, parts[0].meta)


class Mosaic:
    """Four images in one (YOLOv4, YOLOX; MMDetection's ``Mosaic`` and ``CachedMosaic``).

    The canvas is twice ``img_scale``; the images meet at a centre drawn from ``center_ratio_range``
    times ``img_scale`` (see :func:`mosaic`). See the module docstring for where the other three images
    come from.

    Args:
        img_scale: ``(width, height)`` of one tile.
        center_ratio_range: range of the centre, as a fraction of ``img_scale``, per axis.
        fill: canvas colour where no image is.
        prob: probability of making a mosaic.
        max_cached_images, random_pop: the cache (:class:`SampleCache`).
        min_size: boxes cut below this width or height are dropped.
    """

    num_others = 3
    others_need_boxes = False

    def __init__(
        self,
        img_scale: Sequence[int] = (640, 640),
        center_ratio_range: Sequence[float] = (0.5, 1.5),
        *,
        fill: Fill = 114,
        prob: float = 1.0,
        max_cached_images: int = 40,
        random_pop: bool = True,
        min_size: float = 1.0,
    ) -> None:
        self.img_scale = (int(img_scale[0]), int(img_scale[1]))
        self.center_ratio_range = (float(center_ratio_range[0]), float(center_ratio_range[1]))
        self.fill, self.prob, self.min_size = fill, prob, min_size
        self.cache = SampleCache(max_cached_images, random_pop)

    def mix(self, sample: DetSample, others: Sequence[DetSample]) -> DetSample:
        w, h = self.img_scale
        centre = (int(uniform(*self.center_ratio_range) * w), int(uniform(*self.center_ratio_range) * h))
        return mosaic([sample, *others], centre, self.img_scale, self.fill, self.min_size)

    def __call__(self, sample: DetSample) -> DetSample:
        return _cached_mix(self, self.cache, sample)

    def __repr__(self) -> str:
        return (
            f"Mosaic(img_scale={self.img_scale}, prob={self.prob}, max_cached_images={self.cache.max_size})"
        )


def mixup(
    sample: DetSample,
    other: DetSample,
    *,
    img_scale: tuple[int, int],
    jitter: float,
    flip: bool,
    offset: tuple[int, int],
    fill: Fill = 114,
    min_size: float = 1.0,
) -> DetSample:
    """YOLOX's MixUp of ``other`` into ``sample``, for given parameters.

    ``other`` is resized to fit ``img_scale = (width, height)`` (sides truncated), put top-left on an
    ``img_scale`` canvas of ``fill``, the canvas resized by ``jitter`` and flipped if ``flip``; the
    window of ``sample``'s size at ``offset = (x, y)`` of it (``fill`` beyond) is averaged with
    ``sample``'s pixels (``(a + b) // 2``). ``other``'s boxes are moved the same way, clipped and dropped
    below ``min_size``, then appended to ``sample``'s.
    """
    h, w = other.meta.img_size
    factor = min(img_scale[1] / h, img_scale[0] / w)
    moved = resize_sample(other, (max(1, int(h * factor)), max(1, int(w * factor))))
    moved = place(moved, (0, 0, img_scale[0], img_scale[1]), fill)
    moved = resize_sample(moved, (max(1, int(img_scale[1] * jitter)), max(1, int(img_scale[0] * jitter))))
    if flip:
        moved = hflip_sample(moved)
    sh, sw = sample.meta.img_size
    moved = place(moved, (offset[0], offset[1], offset[0] + sw, offset[1] + sh), fill)
    moved = take(moved, large_boxes(moved.boxes, min_size))
    image = ((sample.image.int() + moved.image.int()) // 2).to(sample.image.dtype)
    return stack_instances([sample, moved], image, sample.meta)


class MixUp:
    """YOLOX's MixUp (MMDetection's ``MixUp`` and ``CachedMixUp``): another image, resized, jittered,
    maybe flipped and cropped to this one's size, averaged with it; both images' boxes are kept.

    Args:
        img_scale: ``(width, height)`` the other image is first fitted into.
        ratio_range: range of the jitter (a further resize of the fitted image).
        flip_prob: probability of flipping the other image.
        fill: colour around the other image.
        prob: probability of mixing.
        max_cached_images, random_pop: the cache (:class:`SampleCache`); another sample is drawn again
            while it has no box (``max_refetch`` times at most).
        min_size: the other image's boxes cut below this width or height are dropped.
    """

    num_others = 1
    others_need_boxes = True

    def __init__(
        self,
        img_scale: Sequence[int] = (640, 640),
        ratio_range: Sequence[float] = (0.5, 1.5),
        *,
        flip_prob: float = 0.5,
        fill: Fill = 114,
        prob: float = 1.0,
        max_cached_images: int = 20,
        random_pop: bool = True,
        max_refetch: int = 15,
        min_size: float = 1.0,
    ) -> None:
        self.img_scale = (int(img_scale[0]), int(img_scale[1]))
        self.ratio_range = (float(ratio_range[0]), float(ratio_range[1]))
        self.flip_prob, self.fill, self.prob, self.min_size = flip_prob, fill, prob, min_size
        self.max_refetch = max_refetch
        self.cache = SampleCache(max_cached_images, random_pop)

    def mix(self, sample: DetSample, others: Sequence[DetSample]) -> DetSample:
        other = others[0]
        if len(other) == 0:
            return sample
        jitter = uniform(*self.ratio_range)
        flip = chance(self.flip_prob)
        th, tw = int(self.img_scale[1] * jitter), int(self.img_scale[0] * jitter)
        sh, sw = sample.meta.img_size
        offset = (randint(0, max(tw - sw, 0)), randint(0, max(th - sh, 0)))
        return mixup(sample, other, img_scale=self.img_scale, jitter=jitter, flip=flip, offset=offset,
                     fill=self.fill, min_size=self.min_size)  # fmt: skip

    def __call__(self, sample: DetSample) -> DetSample:
        return _cached_mix(self, self.cache, sample, self.max_refetch)

    def __repr__(self) -> str:
        return f"MixUp(img_scale={self.img_scale}, ratio_range={self.ratio_range}, prob={self.prob})"


def copy_paste(
    dst: DetSample, src: DetSample, bbox_occluded_thr: float = 10, mask_occluded_thr: int = 300
) -> DetSample:
    """Pastes every object of ``src`` (by its mask) onto ``dst`` (Simple Copy-Paste, Ghiasi et al. 2021).

    ``src`` is aligned with ``dst``'s top-left corner (cropped or padded to its size); objects whose
    masks end up empty are not pasted. ``dst``'s masks lose the pasted pixels; an object whose mask lost
    pixels takes its mask's tight box, and is dropped when that box moved by more than
    ``bbox_occluded_thr`` pixels on some side and fewer than ``mask_occluded_thr`` pixels remain
    (MMDetection's rule). The pasted objects come after ``dst``'s, with their labels and ignore flags.

    Raises:
        ValueError: when either sample has no masks.
    """
    if dst.masks is None or src.masks is None:
        raise ValueError("CopyPaste needs instance masks (set dataset.with_mask=true)")
    h, w = dst.meta.img_size
    src = place(src, (0, 0, w, h), 0)
    src = take(src, src.masks.pixel_counts() > 0)  # type: ignore[union-attr]
    pasted = src.masks.union()  # type: ignore[union-attr]  # bool [H, W]
    masks = dst.masks.erase(pasted)
    counts = masks.pixel_counts()
    touched = counts < dst.masks.pixel_counts()  # [N] bool: erasing only clears pixels
    boxes = dst.boxes.clone()
    boxes[touched] = masks[touched].tight_boxes()
    kept = ((boxes - dst.boxes).abs() <= bbox_occluded_thr).all(dim=1) | (counts > mask_occluded_thr)
    dst = take(replace(dst, boxes=boxes, masks=masks), kept)
    image = torch.where(pasted, src.image, dst.image)
    return stack_instances([dst, src], image, dst.meta)


class CopyPaste:
    """Simple Copy-Paste for instance-mask datasets (MMDetection's ``CopyPaste``).

    A random subset of another image's objects (their number drawn from ``[0, min(n, max_num_pasted)]``)
    is pasted onto this image by their masks (see :func:`copy_paste`, which also says when a covered
    object is dropped). MMDetection's recipe pairs it with a large-scale-jitter crop of both images
    to the same size; other sizes are aligned top-left.

    Args:
        max_num_pasted: at most this many objects are pasted.
        bbox_occluded_thr, mask_occluded_thr: see :func:`copy_paste`.
        selected: paste a random subset; False pastes every object.
        prob: probability of pasting.
        max_cached_images, random_pop: the cache (:class:`SampleCache`).
    """

    num_others = 1
    others_need_boxes = True

    def __init__(
        self,
        max_num_pasted: int = 100,
        bbox_occluded_thr: float = 10,
        mask_occluded_thr: int = 300,
        *,
        selected: bool = True,
        prob: float = 1.0,
        max_cached_images: int = 20,
        random_pop: bool = True,
    ) -> None:
        self.max_num_pasted, self.selected, self.prob = int(max_num_pasted), selected, prob
        self.bbox_occluded_thr, self.mask_occluded_thr = bbox_occluded_thr, mask_occluded_thr
        self.cache = SampleCache(max_cached_images, random_pop)

    def _chosen(self, n: int) -> Tensor:
        order = torch.randperm(n, generator=augment_generator())
        return order[: randint(0, min(n, self.max_num_pasted))] if self.selected else order

    def mix(self, sample: DetSample, others: Sequence[DetSample]) -> DetSample:
        src = others[0]
        return copy_paste(
            sample, take(src, self._chosen(len(src))), self.bbox_occluded_thr, self.mask_occluded_thr
        )

    def __call__(self, sample: DetSample) -> DetSample:
        return _cached_mix(self, self.cache, sample)

    def __repr__(self) -> str:
        return f"CopyPaste(max_num_pasted={self.max_num_pasted}, selected={self.selected}, prob={self.prob})"

"""Data pipelines: a list of callables, the first turning an :class:`ImageRecord` into a ``DetSample``.

Every transform after :class:`LoadImage` is a callable ``DetSample -> DetSample`` that keeps boxes,
labels, ignore flags, masks and ``meta`` consistent with the image it returns; boxes are clipped to
the image. In a config each entry names its class with ``_target_``::

    train:
      - _target_: lightdet.data.LoadImage
      - _target_: lightdet.data.Resize
        scale: [1333, 800]
      - _target_: lightdet.data.RandomFlip
        prob: 0.5

Kernels were picked by measurement on 2 CPU cores (640x480 JPEG, one thread): torchvision's
``decode_image`` 2.4 ms vs PIL 3.2 ms vs OpenCV 2.5 ms; torchvision v2's uint8 antialiased resize to
1067x800 1.5 ms vs OpenCV 1.5 ms vs PIL 9.1 ms.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Literal

import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms.v2 import InterpolationMode

from lightdet.data.albu import Albu
from lightdet.data.image_io import (
    BadImageError,
    ExifMode,
    check_exif_mode,
    image_orientation,
    read_image,
    size_mismatch_reason,
)
from lightdet.data.records import ImageRecord, decode_masks
from lightdet.structures import DetSample, ImageMeta, clip_boxes

__all__ = [
    "Transform",
    "Compose",
    "LoadImage",
    "Resize",
    "RandomFlip",
    "Albu",
    "read_image",
    "rescale_size",
    "resize_sample",
    "hflip_sample",
]

Transform = Callable[[Any], Any]
"""A pipeline step: ``ImageRecord -> DetSample`` (the first) or ``DetSample -> DetSample``."""


class Compose:
    """Applies ``transforms`` in order."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError(f"pipeline step {t!r} is not callable: did its config entry lack `_target_`?")

    def __call__(self, data: Any) -> Any:
        for t in self.transforms:
            data = t(data)
        return data

    def __repr__(self) -> str:
        return "Compose([" + ", ".join(map(repr, self.transforms)) + "])"


class LoadImage:
    """``ImageRecord -> DetSample``: decodes the image and, when the record has segmentations, its masks.

    A record that carries its decoded ``image`` (a dataset's cache) is not read from its file again.

    Masks are rasterised with pycocotools from polygons or RLE into
    :class:`~lightdet.structures.CroppedMasks` (each instance's own region only); records carry
    segmentations only when the dataset was built with ``with_mask=True``.

    Args:
        exif: ``"ignore"`` reads the pixels as stored, ``"apply"`` rotates them as EXIF orientation says
            (as a viewer displays them); the annotations must describe the same orientation (see
            :mod:`lightdet.data.image_io`). Configs set it from ``dataset.exif``.

    Raises:
        BadImageError: naming the image id and the file when the file is missing (also a
            ``FileNotFoundError``), unreadable, corrupt or of an unsupported bit depth, or when the decoded
            size differs from the annotation file's ``width``/``height`` (saying when EXIF orientation
            explains it and which ``exif`` setting fits).
    """

    def __init__(self, exif: ExifMode = "ignore") -> None:
        self.exif = check_exif_mode(exif, "LoadImage")

    def decode(self, record: ImageRecord) -> torch.Tensor:
        """The record's image file as ``uint8 [3, H, W]`` (``exif`` applied), checked against its annotation
        size; what a dataset's image cache keeps (:mod:`lightdet.data.image_cache`)."""
        try:
            image = read_image(record.file_path, self.exif)
        except BadImageError as err:
            raise err.located(image_id=record.image_id) from None
        hw = (int(image.shape[1]), int(image.shape[2]))
        if hw != (record.height, record.width):
            raise _size_mismatch(record, hw, self.exif)
        return image

    def __call__(self, record: ImageRecord) -> DetSample:
        image = record.image if record.image is not None else self.decode(record)
        hw = (int(image.shape[1]), int(image.shape[2]))
        masks = None
        if record.segmentations is not None:
            masks = decode_masks(record.segmentations, *hw)
        return DetSample(
            image=image,
            boxes=torch.as_tensor(record.boxes, dtype=torch.float32).reshape(-1, 4),
            labels=torch.as_tensor(record.labels, dtype=torch.int64),
            ignore=torch.as_tensor(record.ignore, dtype=torch.bool),
            masks=masks,
            meta=ImageMeta(image_id=record.image_id, file_name=record.file_path, ori_size=hw, img_size=hw),
        )

    def __repr__(self) -> str:
        return f"LoadImage(exif={self.exif!r})"


def _size_mismatch(record: ImageRecord, hw: tuple[int, int], exif: ExifMode) -> BadImageError:
    """The error for an image whose decoded ``(H, W)`` is not its annotation size."""
    orientation = image_orientation(record.file_path)
    reason = size_mismatch_reason(hw, record.height, record.width, orientation, exif)
    return BadImageError.of(record.file_path, reason, "size_mismatch").located(image_id=record.image_id)


def rescale_size(size: tuple[int, int], scale: tuple[int, int], keep_ratio: bool = True) -> tuple[int, int]:
    """The ``(height, width)`` an image of ``size = (height, width)`` is resized to (MMDetection's rule).

    With ``keep_ratio`` the factor is the largest one for which the long side stays <= ``max(scale)``
    and the short side <= ``min(scale)`` (so ``scale`` may be given in either order); sides are
    rounded to the nearest pixel. Without it, ``scale`` is the target ``(width, height)``.
    """
    h, w = size
    if not keep_ratio:
        return int(scale[1]), int(scale[0])
    factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
    return int(h * factor + 0.5), int(w * factor + 0.5)


def resize_sample(sample: DetSample, size: tuple[int, int]) -> DetSample:
    """Resizes a sample to ``size = (height, width)``: bilinear antialiased image, nearest masks.

    ``meta.scale_factor`` is multiplied by the actual per-axis factors ``(new_w / w, new_h / h)``.
    """
    h, w = sample.meta.img_size
    nh, nw = size
    if (nh, nw) == (h, w):
        return sample
    sx, sy = nw / w, nh / h
    image = TF.resize(sample.image, [nh, nw], interpolation=InterpolationMode.BILINEAR, antialias=True)
    # nearest-exact samples pixel centres, which keeps masks aligned with the scaled boxes
    masks = None if sample.masks is None else sample.masks.resize((nh, nw))
    boxes = clip_boxes(sample.boxes * sample.boxes.new_tensor([sx, sy, sx, sy]), (nh, nw))
    old = sample.meta.scale_factor
    meta = replace(sample.meta, img_size=(nh, nw), scale_factor=(old[0] * sx, old[1] * sy))
    return replace(sample, image=image, boxes=boxes, masks=masks, meta=meta)


def _as_scale(value: Sequence[Any]) -> tuple[int, int]:
    if len(value) != 2 or not all(isinstance(v, (int, float)) and v > 0 for v in value):
        raise ValueError(f"Resize: a scale is two positive numbers (width, height), got {list(value)}")
    return int(value[0]), int(value[1])


class Resize:
    """Resizes to a scale (MMDetection semantics), optionally a random one per sample.

    Args:
        scale: ``(width, height)``, e.g. ``(1333, 800)``, or a list of them for multi-scale training.
        keep_ratio: keep the aspect ratio (see :func:`rescale_size`); else resize to exactly ``scale``.
        multiscale_mode: with several scales, ``"choice"`` picks one of them; ``"range"`` (exactly two
            scales) draws the long edge and the short edge uniformly between those of the two scales.
        downscale_only: leave images that already fit in ``scale`` as they are: a cap on the input size
            (a test pipeline's guard against a huge photo) rather than a target size.
    """

    def __init__(
        self,
        scale: Sequence[int] | Sequence[Sequence[int]] = (1333, 800),
        *,
        keep_ratio: bool = True,
        multiscale_mode: Literal["range", "choice"] = "range",
        downscale_only: bool = False,
    ) -> None:
        nested = len(scale) > 0 and isinstance(scale[0], Sequence)
        scales = scale if nested else [scale]
        self.scales = [_as_scale(s) for s in scales]  # type: ignore[arg-type]
        if multiscale_mode not in ("range", "choice"):
            raise ValueError(f"Resize: multiscale_mode must be 'range' or 'choice', got {multiscale_mode!r}")
        if multiscale_mode == "range" and len(self.scales) not in (1, 2):
            raise ValueError(f"Resize: multiscale_mode='range' takes two scales, got {self.scales}")
        self.keep_ratio = keep_ratio
        self.multiscale_mode = multiscale_mode
        self.downscale_only = downscale_only

    def sample_scale(self) -> tuple[int, int]:
        """Draws this call's ``(width, height)`` scale (torch's RNG, so DataLoader workers differ)."""
        if len(self.scales) == 1:
            return self.scales[0]
        if self.multiscale_mode == "choice":
            return self.scales[int(torch.randint(len(self.scales), ()))]
        longs = sorted(max(s) for s in self.scales)
        shorts = sorted(min(s) for s in self.scales)
        long_edge = int(torch.randint(longs[0], longs[1] + 1, ()))
        short_edge = int(torch.randint(shorts[0], shorts[1] + 1, ()))
        return long_edge, short_edge

    def __call__(self, sample: DetSample) -> DetSample:
        size = rescale_size(sample.meta.img_size, self.sample_scale(), self.keep_ratio)
        if self.downscale_only and size[0] * size[1] >= sample.meta.img_size[0] * sample.meta.img_size[1]:
            return sample
        return resize_sample(sample, size)

    def __repr__(self) -> str:
        scale = self.scales[0] if len(self.scales) == 1 else self.scales
        mode = self.multiscale_mode
        return f"Resize(scale={scale}, keep_ratio={self.keep_ratio}, multiscale_mode={mode!r})"


def hflip_sample(sample: DetSample) -> DetSample:
    """Flips a sample horizontally: boxes ``x -> W - x``, image and masks mirrored, ``meta.flip`` toggled."""
    w = sample.meta.img_size[1]
    x1, y1, x2, y2 = sample.boxes.unbind(-1)
    boxes = torch.stack((w - x2, y1, w - x1, y2), dim=-1)
    masks = None if sample.masks is None else sample.masks.hflip()
    meta = replace(sample.meta, flip=not sample.meta.flip)
    return replace(sample, image=sample.image.flip(-1), boxes=boxes, masks=masks, meta=meta)


class RandomFlip:
    """Flips horizontally with probability ``prob`` (torch's RNG)."""

    def __init__(self, prob: float = 0.5) -> None:
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"RandomFlip: prob must be in [0, 1], got {prob}")
        self.prob = prob

    def __call__(self, sample: DetSample) -> DetSample:
        return hflip_sample(sample) if float(torch.rand(())) < self.prob else sample

    def __repr__(self) -> str:
        return f"RandomFlip(prob={self.prob})"

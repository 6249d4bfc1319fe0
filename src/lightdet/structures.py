"""The data contracts that flow between lightdet's stages.

Conventions (checked at construction, relied upon everywhere else):

* Boxes are ``float32`` tensors of shape ``[N, 4]``, ``(x1, y1, x2, y2)`` in absolute pixels of the
  image they belong to. Width is ``x2 - x1`` (no "+1"). COCO's ``xywh`` is converted at the file
  borders with :func:`xywh_to_xyxy` / :func:`xyxy_to_xywh` and nowhere else.
* Labels are ``int64`` ``[N]`` in ``0..K-1`` for the dataset's K configured classes. Softmax heads
  use index ``K`` for background. The dataset owns the map to the file's category ids.
* Images are ``uint8`` ``[3, H, W]`` RGB until the model's preprocessor normalises them on the device.

``DetSample`` is one image after the data pipeline, ``DetBatch`` a collated list of them and
``Detections`` one image's predictions in the *original* image's coordinates. Ground-truth instance masks
are :class:`~lightdet.cropped_masks.CroppedMasks` (each instance's bitmap over its own region of the image).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import Tensor

from lightdet.cropped_masks import CroppedMasks

__all__ = [
    "CroppedMasks",
    "SkippedImage",
    "ImageMeta",
    "DetSample",
    "DetBatch",
    "Detections",
    "xywh_to_xyxy",
    "xyxy_to_xywh",
    "box_area",
    "clip_boxes",
]


def _check(cond: bool, what: str) -> None:
    if not cond:
        raise ValueError(what)


def _check_boxes(boxes: Tensor, owner: str) -> int:
    _check(isinstance(boxes, Tensor), f"{owner}.boxes must be a torch.Tensor, got {type(boxes).__name__}")
    _check(
        boxes.dtype == torch.float32 and boxes.dim() == 2 and boxes.shape[-1] == 4,
        f"{owner}.boxes must be float32 [N, 4] xyxy, got {boxes.dtype} {tuple(boxes.shape)}",
    )
    return boxes.shape[0]


def _check_vector(t: Tensor | None, n: int, dtype: torch.dtype, owner: str, name: str) -> None:
    _check(isinstance(t, Tensor), f"{owner}.{name} must be a torch.Tensor, got {type(t).__name__}")
    assert t is not None
    _check(
        t.dtype == dtype and t.shape == (n,),
        f"{owner}.{name} must be {dtype} [{n}] (one per box), got {t.dtype} {tuple(t.shape)}",
    )


def _check_masks(masks: Tensor | None, n: int, hw: tuple[int, int] | None, owner: str) -> None:
    if masks is None:
        return
    _check(
        masks.dtype in (torch.uint8, torch.bool) and masks.dim() == 3 and masks.shape[0] == n,
        f"{owner}.masks must be uint8/bool [N={n}, H, W], got {masks.dtype} {tuple(masks.shape)}",
    )
    if hw is not None:
        _check(
            tuple(masks.shape[-2:]) == hw,
            f"{owner}.masks spatial size {tuple(masks.shape[-2:])} differs from the image's {hw}",
        )


def _cropped_masks(
    masks: CroppedMasks | Tensor | None, n: int, hw: tuple[int, int], owner: str
) -> CroppedMasks | None:
    """Checks ground-truth masks against ``n`` boxes and an image of ``hw``; ``[N, H, W]`` bitmaps are
    cropped into :class:`CroppedMasks` here, the one form the pipeline and the models handle."""
    if masks is None or isinstance(masks, CroppedMasks):
        _check(
            masks is None or (len(masks) == n and masks.image_size == hw),
            f"{owner}.masks must hold N={n} masks of the image's {hw}, got {masks!r}",
        )
        return masks
    _check(
        isinstance(masks, Tensor), f"{owner}.masks must be CroppedMasks or a tensor, got {type(masks).__name__}"
    )
    _check_masks(masks, n, hw, owner)
    return CroppedMasks.from_bitmaps(masks)


@dataclass(frozen=True)
class SkippedImage:
    """An image a dataset could not load and replaced by another one (``dataset.on_bad_image=skip``).

    Attributes:
        image_id: its id in the annotation file (None when unknown). file_name: the image file.
        dataset: the dataset it belongs to (class and annotation file). reason: what is wrong with it.
    """

    image_id: int | None
    file_name: str
    dataset: str
    reason: str


@dataclass
class ImageMeta:
    """What is known about one image besides its pixels.

    Attributes:
        image_id: the id of the image in its annotation file (COCO ``images[].id``).
        file_name: path of the image file as given by the dataset (absolute or relative to its root).
        ori_size: ``(height, width)`` of the decoded file, before any transform.
        img_size: ``(height, width)`` after the pipeline (the un-padded size the model sees).
        scale_factor: ``(sx, sy)`` with ``img_size = ori_size * scale`` per axis (x scales widths).
        flip: whether the image was flipped horizontally by the pipeline.
        skipped: the images this one stands in for, which could not be loaded (``on_bad_image=skip``);
            this is how they reach the training process from DataLoader workers. A step that merges
            several samples into one keeps all of theirs.
    """

    image_id: int
    file_name: str
    ori_size: tuple[int, int]
    img_size: tuple[int, int]
    scale_factor: tuple[float, float] = (1.0, 1.0)
    flip: bool = False
    skipped: tuple[SkippedImage, ...] = ()


@dataclass
class DetSample:
    """One image after the data pipeline.

    Attributes:
        image: ``uint8 [3, H, W]`` RGB, with ``(H, W) == meta.img_size``.
        boxes: ``float32 [N, 4]`` xyxy in pixels of ``image``.
        labels: ``int64 [N]`` in ``0..K-1``.
        meta: :class:`ImageMeta`.
        ignore: ``bool [N]``; True for crowd / difficult / ``bboxes_ignore`` boxes, which are neither
            positives nor negatives for the assigners. Defaults to all False.
        masks: optional instance masks aligned with ``image``: :class:`CroppedMasks`, which stand for
            ``uint8 [N, H, W]`` 0/1 bitmaps (``shape``, ``len``, ``masks[i]``, :meth:`~CroppedMasks.to_bitmaps`)
            but hold each instance only over its own region of the image. A ``uint8``/``bool [N, H, W]``
            tensor given here is cropped into them. Records keep the annotation's polygons / RLE until
            :class:`~lightdet.data.LoadImage` rasterises them into regions; the geometric transforms move the
            regions with the image, exactly as they would move the full bitmaps, and mask targets are read
            from them (:func:`lightdet.models.ops.masks.mask_targets`).
    """

    image: Tensor
    boxes: Tensor
    labels: Tensor
    meta: ImageMeta
    ignore: Tensor | None = None
    masks: CroppedMasks | None = None

    def __post_init__(self) -> None:
        _check(
            isinstance(self.image, Tensor) and self.image.dtype == torch.uint8 and self.image.dim() == 3
            and self.image.shape[0] == 3,
            f"DetSample.image must be uint8 [3, H, W], got "
            f"{getattr(self.image, 'dtype', type(self.image))} {tuple(getattr(self.image, 'shape', ()))}",
        )
        hw = (int(self.image.shape[1]), int(self.image.shape[2]))
        _check(
            tuple(self.meta.img_size) == hw,
            f"DetSample.meta.img_size {tuple(self.meta.img_size)} differs from the image's (H, W) {hw} "
            f"(image_id={self.meta.image_id})",
        )
        n = _check_boxes(self.boxes, "DetSample")
        _check_vector(self.labels, n, torch.int64, "DetSample", "labels")
        if self.ignore is None:
            self.ignore = torch.zeros(n, dtype=torch.bool)
        _check_vector(self.ignore, n, torch.bool, "DetSample", "ignore")
        self.masks = _cropped_masks(self.masks, n, hw, "DetSample")

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


@dataclass
class DetBatch:
    """A collated list of :class:`DetSample`.

    Attributes:
        images: ``uint8 [B, 3, H, W]``, each image at the top-left, zero-padded to the largest
            height/width of the batch. The model's preprocessor normalises, re-zeroes the padding and
            pads to its size divisor on the device.
        boxes, labels, ignore, masks: per-image lists, as in :class:`DetSample` (``masks`` items are
            :class:`CroppedMasks` or None, at the image's own un-padded size; bitmaps given are cropped).
        metas: per-image :class:`ImageMeta`; ``metas[i].img_size`` is the valid region of ``images[i]``.
    """

    images: Tensor
    boxes: list[Tensor]
    labels: list[Tensor]
    ignore: list[Tensor]
    metas: list[ImageMeta]
    masks: list[CroppedMasks | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        b = len(self.metas)
        _check(
            self.images.dtype == torch.uint8 and self.images.dim() == 4 and self.images.shape[:2] == (b, 3),
            f"DetBatch.images must be uint8 [B={b}, 3, H, W], got {self.images.dtype} {tuple(self.images.shape)}",
        )
        for name in ("boxes", "labels", "ignore"):
            _check(len(getattr(self, name)) == b, f"DetBatch.{name} has {len(getattr(self, name))} items for {b} images")
        if not self.masks:
            self.masks = [None] * b
        _check(len(self.masks) == b, f"DetBatch.masks has {len(self.masks)} items for {b} images")
        self.masks = [
            _cropped_masks(m, len(boxes), tuple(meta.img_size), f"DetBatch (image {meta.image_id})")
            for m, boxes, meta in zip(self.masks, self.boxes, self.metas)
        ]

    @classmethod
    def collate(cls, samples: Sequence[DetSample]) -> DetBatch:
        """Stacks samples into one zero-padded ``uint8`` tensor (top-left aligned)."""
        _check(len(samples) > 0, "DetBatch.collate needs at least one sample")
        h = max(s.image.shape[1] for s in samples)
        w = max(s.image.shape[2] for s in samples)
        images = samples[0].image.new_zeros((len(samples), 3, h, w))
        for i, s in enumerate(samples):
            images[i, :, : s.image.shape[1], : s.image.shape[2]] = s.image
        return cls(
            images=images,
            boxes=[s.boxes for s in samples],
            labels=[s.labels for s in samples],
            ignore=[s.ignore for s in samples],  # type: ignore[misc]
            metas=[s.meta for s in samples],
            masks=[s.masks for s in samples],
        )

    def to(self, device: torch.device | str, non_blocking: bool = False) -> DetBatch:
        """Moves every tensor to ``device`` (metas stay on the host)."""

        def mv(t: Tensor | CroppedMasks | None) -> Any:
            return None if t is None else t.to(device, non_blocking=non_blocking)

        return replace(
            self,
            images=self.images.to(device, non_blocking=non_blocking),
            boxes=[mv(t) for t in self.boxes],
            labels=[mv(t) for t in self.labels],
            ignore=[mv(t) for t in self.ignore],
            masks=[mv(t) for t in self.masks],
        )

    def pin_memory(self) -> DetBatch:
        """Pins host tensors; called by ``DataLoader(pin_memory=True)``."""
        return replace(
            self,
            images=self.images.pin_memory(),
            boxes=[t.pin_memory() for t in self.boxes],
            labels=[t.pin_memory() for t in self.labels],
            ignore=[t.pin_memory() for t in self.ignore],
            masks=[None if t is None else t.pin_memory() for t in self.masks],
        )

    def __len__(self) -> int:
        return len(self.metas)


@dataclass
class Detections:
    """One image's predictions, in the **original** image's pixel coordinates.

    Attributes:
        boxes: ``float32 [N, 4]`` xyxy.
        scores: ``float32 [N]`` in ``[0, 1]``.
        labels: ``int64 [N]`` in ``0..K-1``.
        masks: optional ``bool [N, H, W]`` binary masks at the original image size.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    masks: Tensor | None = None

    def __post_init__(self) -> None:
        n = _check_boxes(self.boxes, "Detections")
        _check(
            isinstance(self.scores, Tensor) and self.scores.shape == (n,) and self.scores.is_floating_point(),
            f"Detections.scores must be float [{n}], got {getattr(self.scores, 'dtype', None)} "
            f"{tuple(getattr(self.scores, 'shape', ()))}",
        )
        _check_vector(self.labels, n, torch.int64, "Detections", "labels")
        _check_masks(self.masks, n, None, "Detections")

    @classmethod
    def empty(cls, device: torch.device | str = "cpu") -> Detections:
        return cls(
            boxes=torch.zeros((0, 4), dtype=torch.float32, device=device),
            scores=torch.zeros((0,), dtype=torch.float32, device=device),
            labels=torch.zeros((0,), dtype=torch.int64, device=device),
        )

    def to(self, device: torch.device | str) -> Detections:
        return Detections(
            boxes=self.boxes.to(device),
            scores=self.scores.to(device),
            labels=self.labels.to(device),
            masks=None if self.masks is None else self.masks.to(device),
        )

    def __getitem__(self, index: Tensor | slice) -> Detections:
        """Selects detections by a boolean mask, an index tensor or a slice."""
        return Detections(
            boxes=self.boxes[index],
            scores=self.scores[index],
            labels=self.labels[index],
            masks=None if self.masks is None else self.masks[index],
        )

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


def xywh_to_xyxy(boxes: Tensor) -> Tensor:
    """``[..., 4]`` (x, y, w, h) -> (x1, y1, x2, y2)."""
    x, y, w, h = boxes.unbind(-1)
    return torch.stack((x, y, x + w, y + h), dim=-1)


def xyxy_to_xywh(boxes: Tensor) -> Tensor:
    """``[..., 4]`` (x1, y1, x2, y2) -> (x, y, w, h)."""
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack((x1, y1, x2 - x1, y2 - y1), dim=-1)


def box_area(boxes: Tensor) -> Tensor:
    """``[N, 4]`` xyxy -> ``[N]`` areas (zero for degenerate boxes)."""
    return (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)


def clip_boxes(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Clips ``[..., 4]`` xyxy boxes to an image of ``size = (height, width)``."""
    h, w = size
    x1 = boxes[..., 0].clamp(0, w)
    y1 = boxes[..., 1].clamp(0, h)
    x2 = boxes[..., 2].clamp(0, w)
    y2 = boxes[..., 3].clamp(0, h)
    return torch.stack((x1, y1, x2, y2), dim=-1)

"""Parsed annotation records: what a dataset knows about one image before its pixels are decoded.

A dataset turns its annotation file into :class:`ImageRecord` objects once, at construction; the
first transform of a pipeline (:class:`lightdet.data.transforms.LoadImage`) turns a record into a
:class:`~lightdet.structures.DetSample`. Records are kept pickled in one numpy buffer
(:class:`RecordStore`) so that DataLoader workers forked from the main process share the pages
instead of copying them as Python reference counts change.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils

from lightdet.cropped_masks import CroppedMasks

__all__ = ["ImageRecord", "RecordStore", "Segmentation", "decode_masks", "segmentation_problem"]

Segmentation = list[list[float]] | Mapping[str, Any]
"""One instance's COCO segmentation: a list of polygons ``[x1, y1, x2, y2, ...]`` or an RLE dict."""


@dataclass(frozen=True)
class ImageRecord:
    """One image's annotations, as parsed from the file.

    Attributes:
        image_id: the image's id in the annotation file.
        file_path: path of the image file.
        width, height: the image size given by the annotation file.
        boxes: ``float32 [N, 4]`` xyxy in pixels, clipped to the image.
        labels: ``int64 [N]`` in ``0..K-1`` (the dataset's configured class order).
        ignore: ``bool [N]``; True for crowd regions.
        segmentations: per box, its polygons or RLE (:data:`Segmentation`); None when the dataset was
            built without masks.
        image: the decoded pixels ``uint8 [3, H, W]`` when the dataset keeps its images in a cache
            (:mod:`lightdet.data.image_cache`; attached as a sample is loaded, never stored in a
            :class:`RecordStore`); None: ``LoadImage`` decodes ``file_path``.
    """

    image_id: int
    file_path: str
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    ignore: np.ndarray
    segmentations: list[Segmentation] | None = None
    image: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


class RecordStore(Sequence[ImageRecord]):
    """An immutable list of records serialised into one ``uint8`` buffer (copy-on-write friendly)."""

    def __init__(self, records: Sequence[ImageRecord]) -> None:
        blobs = [pickle.dumps(r, protocol=pickle.HIGHEST_PROTOCOL) for r in records]
        self._offsets = np.cumsum([0, *(len(b) for b in blobs)], dtype=np.int64)
        self._buffer = np.frombuffer(b"".join(blobs), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, index: int) -> ImageRecord:  # type: ignore[override]
        if not -len(self) <= index < len(self):
            raise IndexError(f"record index {index} out of range for {len(self)} records")
        index %= len(self)
        start, end = self._offsets[index], self._offsets[index + 1]
        return pickle.loads(self._buffer[start:end].tobytes())


def _to_rle(segmentation: Segmentation, height: int, width: int) -> dict[str, Any]:
    """One instance's polygons / uncompressed RLE / compressed RLE -> one compressed RLE."""
    if isinstance(segmentation, Mapping):
        if isinstance(segmentation["counts"], list):  # uncompressed RLE (COCO crowd regions)
            return mask_utils.frPyObjects(dict(segmentation), height, width)
        return dict(segmentation)
    # a polygon needs three points; COCO has a few shorter ones, which cover no pixel
    polygons = [list(map(float, p)) for p in segmentation if len(p) >= 6]
    if not polygons:
        return mask_utils.encode(np.zeros((height, width, 1), dtype=np.uint8, order="F"))[0]
    return mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))


def decode_masks(segmentations: Sequence[Segmentation], height: int, width: int) -> CroppedMasks:
    """Rasterises COCO segmentations with pycocotools, keeping each instance's region only.

    Args:
        segmentations: ``N`` instances, each polygons or an RLE dict.
        height, width: the image size.

    Returns:
        :class:`~lightdet.structures.CroppedMasks` whose regions are the RLEs' boxes (pycocotools'
        ``toBbox``, which holds every set pixel). One instance is decoded at a time, so no more than one
        full-image bitmap exists at once.
    """
    if len(segmentations) == 0:
        return CroppedMasks.empty((height, width))
    rles = [_to_rle(s, height, width) for s in segmentations]
    xywh = mask_utils.toBbox(rles).astype(np.int64).reshape(-1, 4)
    regions = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)
    crops = [
        torch.from_numpy(mask_utils.decode(rle)[y0:y1, x0:x1])
        for rle, (x0, y0, x1, y1) in zip(rles, regions.tolist())
    ]
    return CroppedMasks.from_crops(crops, torch.from_numpy(regions), (height, width))


def _rle_string_counts(counts: str) -> list[int] | None:
    """The run lengths of a compressed RLE string (pycocotools' ``rleFrString``); None when it is malformed.

    pycocotools decodes a malformed string without checks and writes past its buffer, which kills the
    process; reading it here first turns that into a message naming the annotation.
    """
    runs: list[int] = []
    pos = 0
    while pos < len(counts):
        value, shift, more = 0, 0, True
        while more:
            if pos >= len(counts) or not 0 <= ord(counts[pos]) - 48 < 64:
                return None
            char = ord(counts[pos]) - 48
            value |= (char & 0x1F) << (5 * shift)
            more = bool(char & 0x20)
            pos, shift = pos + 1, shift + 1
            if not more and char & 0x10:
                value |= -1 << (5 * shift)
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def _rle_problem(rle: Mapping[str, Any], height: int, width: int) -> str | None:
    size, counts = rle.get("size"), rle.get("counts")
    if not (isinstance(size, list) and size == [height, width]):
        return f"its RLE `size` must be [height, width] = [{height}, {width}], got {str(size)[:40]!r}"
    runs = _rle_string_counts(counts) if isinstance(counts, str) else counts
    if not (isinstance(runs, list) and all(isinstance(r, int) and 0 <= r < 2**32 for r in runs)
            and sum(runs) == height * width):
        return (f"its RLE `counts` must be a compressed string or run lengths (non-negative integers) adding up "
                f"to height x width = {height * width}, got {str(counts)[:40]!r}")
    return None


def _polygon_problem(polygons: list[Any], height: int, width: int) -> str | None:
    if not all(isinstance(p, list) and len(p) % 2 == 0 for p in polygons):
        return f"its segmentation must be polygons (lists of x, y numbers), got {str(polygons)[:40]!r}"
    try:
        points = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polygons]
    except (TypeError, ValueError):
        return f"its polygons must hold numbers, got {str(polygons)[:40]!r}"
    # pycocotools allocates memory in proportion to a polygon's extent: a far-off point exhausts it
    low, high = np.array([-width, -height]), np.array([2 * width, 2 * height])
    if not all(((xy >= low) & (xy <= high)).all() for xy in points):
        return (f"a polygon point is NaN, infinite or more than an image size outside the {width}x{height} "
                f"image, got {str(polygons)[:40]!r}")
    return None


def segmentation_problem(segmentation: Any, height: int, width: int) -> str | None:
    """Why ``segmentation`` cannot be rasterised for an image of ``height`` x ``width`` (None when it can):
    polygons (lists of an even number of x, y numbers within one image size of the image) or an RLE of
    that size."""
    if isinstance(segmentation, Mapping):
        return _rle_problem(segmentation, height, width)
    if isinstance(segmentation, list):
        return _polygon_problem(segmentation, height, width)
    return f"its segmentation must be polygons or an RLE object, got {str(segmentation)[:40]!r}"

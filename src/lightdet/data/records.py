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
from pycocotools import mask as mask_utils

__all__ = ["ImageRecord", "RecordStore", "Segmentation", "decode_masks"]

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
    """

    image_id: int
    file_path: str
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    ignore: np.ndarray
    segmentations: list[Segmentation] | None = None

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


def decode_masks(segmentations: Sequence[Segmentation], height: int, width: int) -> np.ndarray:
    """Rasterises COCO segmentations with pycocotools.

    Args:
        segmentations: ``N`` instances, each polygons or an RLE dict.
        height, width: the image size.

    Returns:
        ``uint8 [N, height, width]`` 0/1 masks (C-contiguous).
    """
    if len(segmentations) == 0:
        return np.zeros((0, height, width), dtype=np.uint8)
    # pycocotools converts one instance at a time; the decode itself is batched
    rles = [_to_rle(s, height, width) for s in segmentations]
    return np.ascontiguousarray(mask_utils.decode(rles).transpose(2, 0, 1))

"""COCO-format detection / instance-segmentation dataset.

The annotation file is read once: categories are matched to the configured classes
(:func:`lightdet.categories.match_categories`), every annotation's category and image are checked,
boxes are converted from ``xywh`` to clipped ``xyxy``, crowd regions become ``ignore`` boxes and
zero-size boxes are dropped. What was changed is reported once, at INFO, naming the file.
Segmentations are kept as polygons / RLE and rasterised (pycocotools) when a sample is loaded.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from lightdet.categories import ClassesSpec, match_categories
from lightdet.data.coco_format import read_coco_file, require_coco_structure
from lightdet.data.datasets.base import BadImagePolicy, PipelineSpec, RecordDataset, require_path
from lightdet.data.image_cache import CacheMode
from lightdet.data.records import ImageRecord, segmentation_problem
from lightdet.data.sources import AnnotationSource

__all__ = ["CocoDataset"]

logger = logging.getLogger(__name__)


@dataclass
class _AnnTable:
    """The annotations of one file as parallel arrays (``M`` annotations)."""

    ids: np.ndarray  # int64 [M]
    image_ids: np.ndarray  # int64 [M]
    cat_ids: np.ndarray  # int64 [M]
    bboxes: np.ndarray  # float64 [M, 4] xywh
    crowd: np.ndarray  # bool [M]
    segmentations: list[Any]  # [M]


def _ann_table(anns: list[dict[str, Any]]) -> _AnnTable:
    """The annotations of a file whose structure :func:`require_coco_structure` accepted."""
    return _AnnTable(
        ids=np.array([a["id"] for a in anns], dtype=np.int64),
        image_ids=np.array([a["image_id"] for a in anns], dtype=np.int64),
        cat_ids=np.array([a["category_id"] for a in anns], dtype=np.int64),
        bboxes=np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4),
        crowd=np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool),
        segmentations=[a.get("segmentation") for a in anns],
    )


def _check_finite(table: _AnnTable, ann_file: Path) -> None:
    """A box with a NaN or infinite number is an error in the file, not a box to drop quietly."""
    bad = ~np.isfinite(table.bboxes).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{ann_file}: annotation {table.ids[i]} (image {table.image_ids[i]}) has a bbox with NaN or infinite "
            f"numbers {table.bboxes[i].tolist()}; {int(bad.sum())} annotation(s) are affected "
            f"(`lightdet-data check {ann_file}` lists them)"
        )


def _check_references(table: _AnnTable, cat_ids: set[int], image_ids: np.ndarray, ann_file: Path) -> None:
    """Every annotation must name a category of the file and an image of the file."""
    bad = ~np.isin(table.cat_ids, np.fromiter(cat_ids, dtype=np.int64, count=len(cat_ids)))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{ann_file}: annotation {table.ids[i]} (image {table.image_ids[i]}) has category_id "
            f"{table.cat_ids[i]}, which is not in `categories` (ids {sorted(cat_ids)}); "
            f"{int(bad.sum())} annotation(s) are affected"
        )
    bad = ~np.isin(table.image_ids, image_ids)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{ann_file}: annotation {table.ids[i]} refers to image {table.image_ids[i]}, which is not in "
            f"`images`; {int(bad.sum())} annotation(s) are affected"
        )


def _check_segmentations(table: _AnnTable, keep: np.ndarray, image_wh: np.ndarray, ann_file: Path) -> None:
    """With masks, every kept annotation needs polygons or an RLE of its image's size (``image_wh [M, 2]``)."""
    for j in keep:
        where = f"{ann_file}: annotation {table.ids[j]} (image {table.image_ids[j]})"
        if not table.segmentations[j]:
            raise ValueError(f"{where} has no `segmentation`, which with_mask=True needs (use a box-only model, "
                             "or add the masks)")
        problem = segmentation_problem(table.segmentations[j], int(image_wh[j, 1]), int(image_wh[j, 0]))
        if problem is not None:
            raise ValueError(f"{where}: {problem}")


class CocoDataset(RecordDataset):
    """A COCO json file and its image folder.

    Args:
        ann_file: the COCO annotation json.
        img_dir: the folder that ``images[].file_name`` is relative to.
        classes: the configured classes: None (every category of the file, in id order), a list of
            names, one bare name, or a path to ``classes.txt``. Labels ``0..K-1`` follow this order;
            annotations of other categories are dropped.
        pipeline: a callable or a list of transforms applied to each :class:`ImageRecord`; it must
            start with :class:`~lightdet.data.transforms.LoadImage` and return a ``DetSample``.
            Default: ``[LoadImage()]``.
        filter_empty: drop images without any non-ignored box (training); kept by default.
        with_mask: keep segmentations so that ``LoadImage`` decodes ``masks``: a
            :class:`~lightdet.structures.CroppedMasks`, each instance cropped to its pixels.
        strict_classes: require the file's categories (names, in id order) to equal ``classes``.
        num_classes: when given, must equal the number of configured classes.
        content: the parsed JSON of ``ann_file`` when the caller has read it already (it is then not
            read again).
        on_bad_image: ``"error"`` (default) stops at an image that cannot be loaded, naming it; ``"skip"``
            loads another image in its place and records it (see :class:`RecordDataset`).
        cache: keep the decoded images for the run: ``"ram"`` (shared memory), ``"disk"`` (``.npy`` files
            beside the images) or None (decode on every load); see :mod:`lightdet.data.image_cache`.

    Attributes:
        class_names: ``K`` names in label order. cat_ids: per label, the file's category id.
        num_classes: ``K``.
    """

    def __init__(
        self,
        ann_file: str | PathLike,
        img_dir: str | PathLike,
        *,
        classes: ClassesSpec | None = None,
        pipeline: PipelineSpec = None,
        filter_empty: bool = False,
        with_mask: bool = False,
        strict_classes: bool = False,
        num_classes: int | None = None,
        content: Mapping[str, Any] | None = None,
        on_bad_image: BadImagePolicy = "error",
        cache: CacheMode | None = None,
    ) -> None:
        self.ann_file, self.img_dir = Path(ann_file), Path(img_dir)
        require_path(self.ann_file, "annotation file", "ann_file", "CocoDataset")
        require_path(self.img_dir, "image folder", "img_dir", "CocoDataset")
        self.with_mask = with_mask
        data = read_coco_file(self.ann_file, content)
        require_coco_structure(data, self.ann_file)
        self.class_names, self.cat_ids = match_categories(
            classes,
            data["categories"],
            source=str(self.ann_file),
            num_classes=num_classes,
            strict=strict_classes,
        )
        self.num_classes = len(self.class_names)
        self.source = str(self.ann_file)
        self._set_records(self._parse(data, filter_empty), pipeline, on_bad_image, cache)

    @classmethod
    def annotation_sources(
        cls,
        ann_file: str | PathLike,
        img_dir: str | PathLike | None = None,
        *,
        classes: ClassesSpec | None = None,
        content: Mapping[str, Any] | None = None,
        **_: Any,
    ) -> list[AnnotationSource]:
        """The file, read as it is (see :mod:`lightdet.data.sources`; the other arguments are ignored)."""
        # a file without `categories` still reads: `lightdet-data check` reports it with the rest
        read = partial(read_coco_file, ann_file, content, required=("images",))
        return [AnnotationSource(str(ann_file), None if img_dir is None else str(img_dir), classes, read, "xywh")]

    def _parse(self, data: dict[str, Any], filter_empty: bool) -> list[ImageRecord]:
        """Checks the file and builds one record per kept image."""
        images = data["images"]
        sizes = np.array([(img["width"], img["height"]) for img in images], dtype=np.float64).reshape(-1, 2)
        image_ids = np.array([img["id"] for img in images], dtype=np.int64)
        uniq, counts = np.unique(image_ids, return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"{self.ann_file}: image id {int(uniq[counts > 1][0])} appears more than once")
        table = _ann_table(data.get("annotations", []))
        _check_references(table, {int(c["id"]) for c in data["categories"]}, image_ids, self.ann_file)
        _check_finite(table, self.ann_file)
        # annotation -> its image's index in `images`
        position = np.argsort(image_ids, kind="stable")[np.searchsorted(uniq, table.image_ids)]
        selected = np.isin(table.cat_ids, np.array(self.cat_ids, dtype=np.int64))
        boxes = self._clipped_xyxy(table.bboxes, sizes[position])
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        keep = np.flatnonzero(selected & valid)
        if self.with_mask:
            _check_segmentations(table, keep, sizes[position], self.ann_file)
        records = self._group_by_image(images, table, boxes, position, keep)
        empty = sum(1 for r in records if not (~r.ignore).any())
        if filter_empty:
            records = [r for r in records if (~r.ignore).any()]
        self._log_summary(
            records,
            {
                "annotations of other classes dropped": int((~selected).sum()),
                "zero-size boxes skipped": int((selected & ~valid).sum()),
                "crowd boxes marked ignore": int(table.crowd[keep].sum()),
                f"images without boxes {'dropped' if filter_empty else 'kept'}": empty,
            },
        )
        return records

    def _log_summary(self, records: list[ImageRecord], counts: dict[str, int]) -> None:
        logger.info(
            "%s: %d images, %d boxes, %d classes; %s",
            self.ann_file,
            len(records),
            sum(len(r) for r in records),
            self.num_classes,
            ", ".join(f"{n} {what}" for what, n in counts.items() if n) or "nothing dropped",
        )

    @staticmethod
    def _clipped_xyxy(xywh: np.ndarray, image_wh: np.ndarray) -> np.ndarray:
        """``[M, 4]`` xywh -> xyxy clipped to each annotation's image ``[M, 2]`` (width, height)."""
        xyxy = np.concatenate((xywh[:, :2], xywh[:, :2] + xywh[:, 2:]), axis=1)
        return np.clip(xyxy, 0, np.tile(image_wh, 2))

    def _group_by_image(
        self,
        images: list[dict[str, Any]],
        table: _AnnTable,
        boxes: np.ndarray,
        position: np.ndarray,
        keep: np.ndarray,
    ) -> list[ImageRecord]:
        """One record per entry of ``images`` with its ``keep`` annotations (``position``: their image)."""
        cat_ids = np.array(self.cat_ids, dtype=np.int64)
        by_id = np.argsort(cat_ids)
        labels = by_id[np.searchsorted(cat_ids[by_id], table.cat_ids[keep])]
        order = np.argsort(position[keep], kind="stable")  # file order of annotations within an image
        bounds = np.cumsum(np.bincount(position[keep], minlength=len(images)))
        img_dir = str(self.img_dir)
        records = []
        for i, img in enumerate(images):
            sel = order[(bounds[i - 1] if i else 0) : bounds[i]]
            records.append(
                ImageRecord(
                    image_id=int(img["id"]),
                    file_path=os.path.join(img_dir, img["file_name"]),
                    width=int(img["width"]),
                    height=int(img["height"]),
                    boxes=boxes[keep[sel]].astype(np.float32),
                    labels=labels[sel],
                    ignore=table.crowd[keep[sel]],
                    segmentations=[table.segmentations[j] for j in keep[sel]] if self.with_mask else None,
                )
            )
        return records

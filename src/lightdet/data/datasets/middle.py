"""The middle format (MMDetection's custom-dataset format) read from JSON.

A file holds the class names and one record per image; boxes are ``xyxy`` in pixels and labels
index ``classes``::

    {"classes": ["cat", "dog"],
     "images": [
       {"filename": "a.jpg", "width": 640, "height": 480, "id": 7,
        "ann": {"bboxes": [[10, 20, 110, 220]], "labels": [0],
                "bboxes_ignore": [[0, 0, 5, 5]], "labels_ignore": [1],
                "segmentations": [[[10, 20, 110, 20, 110, 220]]]}}]}

``id`` (default: the record's position), ``bboxes_ignore`` / ``labels_ignore`` and ``segmentations``
(COCO polygons or RLE, one per box of ``bboxes``) are optional. A bare list of records (no
``classes``) is accepted too; its labels then index the configured ``classes``. The file is parsed as
JSON only, so loading it cannot run code (unlike the seed's pickle files).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from lightdet.categories import ClassesSpec, load_class_names, match_categories
from lightdet.data.coco_format import coco_annotation, coco_categories, is_integral, read_json
from lightdet.data.datasets.base import BadImagePolicy, PipelineSpec, RecordDataset, require_path
from lightdet.data.image_cache import CacheMode
from lightdet.data.records import ImageRecord, segmentation_problem
from lightdet.data.sources import AnnotationSource

__all__ = ["MiddleDataset", "MiddleImage", "middle_as_coco", "read_middle"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MiddleImage:
    """One validated record of a middle-format file (``N`` boxes, then ``M`` ignored boxes)."""

    image_id: int
    filename: str
    width: int
    height: int
    bboxes: np.ndarray  # float64 [N, 4] xyxy
    labels: np.ndarray  # int64 [N]
    bboxes_ignore: np.ndarray  # float64 [M, 4] xyxy
    labels_ignore: np.ndarray  # int64 [M]
    segmentations: list[Any] | None  # [N] or None


def _numbers(value: Any) -> bool:
    """A list of numbers or of lists of numbers (no strings, no booleans)."""
    if isinstance(value, list):
        return all(_numbers(v) for v in value)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _array(ann: dict[str, Any], key: str, shape: tuple[int, ...], where: str) -> np.ndarray:
    """``ann[key]`` as ``float64 [n, 4]`` boxes (``shape`` ``(0, 4)``) or ``int64 [n]`` labels (``(0,)``)."""
    value = ann.get(key, [])
    try:
        if not (isinstance(value, list) and _numbers(value)):
            raise ValueError
        arr = np.asarray(value, dtype=np.float64)  # a ragged list raises here
    except ValueError:
        raise ValueError(f"{where}: `ann.{key}` must be a list of numbers, got {value!r:.80}") from None
    if len(shape) == 1:
        if not (np.isfinite(arr).all() and (arr == np.round(arr)).all() and (np.abs(arr) < 2**62).all()):
            raise ValueError(f"{where}: `ann.{key}` must be class indices (integers), got {value!r:.80}")
        arr = arr.astype(np.int64)
    return arr.reshape(shape) if arr.size == 0 else arr


def _check_shape(arr: np.ndarray, key: str, dim: int, where: str) -> None:
    ok = arr.ndim == 2 and arr.shape[1] == 4 if dim == 2 else arr.ndim == 1
    if not ok:
        expected = "[n, 4] (x1, y1, x2, y2 per box)" if dim == 2 else "[n] (one class index per box)"
        raise ValueError(f"{where}: `ann.{key}` has shape {list(arr.shape)}, expected {expected}")


def _integer(item: dict[str, Any], key: str, where: str, positive: bool = False) -> int:
    value = item[key]
    if not is_integral(value) or (positive and value <= 0):
        raise ValueError(f"{where}: `{key}` must be a {'positive ' if positive else ''}integer, got {value!r:.40}")
    return int(value)


def _parse_record(item: Any, index: int, path: Path) -> MiddleImage:
    where = f"{path}: record {index}"
    if not isinstance(item, dict):
        raise ValueError(f"{where}: expected an object with filename/width/height/ann, got {type(item).__name__}")
    missing = [k for k in ("filename", "width", "height") if k not in item]
    if missing:
        raise ValueError(f"{where}: missing key(s) {missing} (expected filename, width, height, ann)")
    if not isinstance(item["filename"], str):
        raise ValueError(f"{where}: `filename` must be a string, got {item['filename']!r:.40}")
    where = f"{path}: record {index} ({item['filename']})"
    width, height = _integer(item, "width", where, True), _integer(item, "height", where, True)
    image_id = _integer(item, "id", where) if "id" in item else index
    ann = item.get("ann", {})
    if not isinstance(ann, dict):
        raise ValueError(f"{where}: `ann` must be an object with bboxes/labels, got {type(ann).__name__}")
    arrays = {k: _array(ann, k, (0, 4) if "bboxes" in k else (0,), where) for k in
              ("bboxes", "labels", "bboxes_ignore", "labels_ignore")}
    for key, arr in arrays.items():
        _check_shape(arr, key, 2 if "bboxes" in key else 1, where)
    for boxes, labels in (("bboxes", "labels"), ("bboxes_ignore", "labels_ignore")):
        if len(arrays[boxes]) != len(arrays[labels]):
            raise ValueError(
                f"{where}: {len(arrays[boxes])} `ann.{boxes}` but {len(arrays[labels])} `ann.{labels}`"
            )
    segms = ann.get("segmentations")
    if segms is not None and (not isinstance(segms, list) or len(segms) != len(arrays["bboxes"])):
        raise ValueError(f"{where}: `ann.segmentations` must be a list of one segmentation per bbox "
                         f"({len(arrays['bboxes'])}), got {str(segms)[:40]!r}")
    return MiddleImage(image_id=image_id, filename=item["filename"], width=width, height=height,
                       segmentations=segms, **arrays)


def read_middle(path: str | PathLike, content: Any = None) -> tuple[list[str] | None, list[MiddleImage]]:
    """Parses and validates a middle-format JSON file (``content``: its JSON when already parsed).

    Returns:
        ``(classes, images)``: the file's class names (None for a bare list of records) and its records.

    Raises:
        FileNotFoundError, ValueError: naming the file, the record and the key at fault.
    """
    path = Path(path)
    if content is None and not path.is_file():
        raise FileNotFoundError(f"middle-format file {str(path)!r} does not exist")
    data = read_json(path, "; the middle format is JSON (pickle is not read)") if content is None else content
    classes = None
    if isinstance(data, dict):
        if "images" not in data or not isinstance(data.get("classes"), list):
            raise ValueError(f"{path}: expected {{'classes': [...], 'images': [...]}} or a list of records")
        classes, data = _file_classes(data["classes"], path), data["images"]
    if not isinstance(data, list):
        raise ValueError(f"{path}: `images` must be a list of records, got {type(data).__name__}")
    images = [_parse_record(item, i, path) for i, item in enumerate(data)]
    ids = [m.image_id for m in images]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"{path}: image id {dup} is used by more than one record")
    return classes, images


def _file_classes(classes: list[Any], path: Path) -> list[str]:
    """The ``classes`` list of a middle-format file, checked by :func:`load_class_names` (naming the file)."""
    if not all(isinstance(c, str) for c in classes):
        raise ValueError(f"{path}: `classes` must be a list of names, got {str(classes)[:60]!r}")
    try:
        return load_class_names(classes)
    except ValueError as err:
        raise ValueError(f"{path}: `classes`: {err}") from None


def _check_conversion_classes(
    path: str | PathLike, file_classes: list[str] | None, classes: ClassesSpec | None
) -> None:
    if file_classes is None and classes is None:
        raise ValueError(f"{path}: a bare list of records has no class names; pass --classes")
    if classes is not None and file_classes is not None and load_class_names(classes) != file_classes:
        raise ValueError(f"{path}: the file's classes {file_classes} differ from --classes {load_class_names(classes)}")


def middle_as_coco(
    path: str | PathLike, content: Any = None, *, classes: ClassesSpec | None = None, strict: bool = False
) -> dict[str, Any]:
    """A middle-format file as COCO: ``bboxes`` then ``bboxes_ignore`` (``iscrowd: 1``) per image, in
    the file's order and values; label ``i`` is category ``i + 1``, ``segmentations`` are kept.

    Args:
        classes: the category names of a bare list of records (a file's own ``classes`` win).
        strict: as an offline conversion wants: a bare list needs ``classes``, a file's own classes must
            equal them when both are given, and a label outside the classes fails (else its category id
            names no category).
    """
    file_classes, records = read_middle(path, content)
    if strict:
        _check_conversion_classes(path, file_classes, classes)
    names = file_classes or (load_class_names(classes) if classes is not None else [])
    images, annotations = [], []
    for m in records:
        images.append({"id": m.image_id, "file_name": m.filename, "width": m.width, "height": m.height})
        segms: Sequence[Any] = m.segmentations or [None] * len(m.bboxes)
        boxes = [(b, lab, False, sg) for b, lab, sg in zip(m.bboxes.tolist(), m.labels.tolist(), segms)]
        boxes += [(b, lab, True, None) for b, lab in zip(m.bboxes_ignore.tolist(), m.labels_ignore.tolist())]
        for box, label, crowd, segm in boxes:
            if strict and not 0 <= label < len(names):
                raise ValueError(f"{path}: image {m.image_id} ({m.filename}) has label {label}, expected "
                                 f"0..{len(names) - 1} (classes {names})")
            annotations.append(coco_annotation(len(annotations) + 1, m.image_id, label + 1, box, crowd, segm))
    return {"images": images, "annotations": annotations, "categories": coco_categories(names)}


class MiddleDataset(RecordDataset):
    """A middle-format JSON file and its image folder.

    Args:
        ann_file: the JSON file (see the module docstring).
        img_dir: the folder that ``filename`` is relative to.
        classes: the configured classes (a list, one bare name or a ``classes.txt`` path). With a file
            that lists its classes, a subset or reordering is matched by name and other labels are
            dropped; a bare list of records needs ``classes``, which its labels index.
        pipeline, filter_empty, num_classes, strict_classes: as for
            :class:`~lightdet.data.CocoDataset`.
        with_mask: keep ``ann.segmentations`` for ``LoadImage`` to rasterise (required per box).
        content: the parsed JSON of ``ann_file`` when the caller has read it already.
        on_bad_image: ``"error"`` (default) stops at an image that cannot be loaded, naming it; ``"skip"``
            loads another image in its place and records it (see :class:`RecordDataset`).
        cache: keep the decoded images for the run: ``"ram"`` (shared memory), ``"disk"`` (``.npy`` files
            beside the images) or None (decode on every load); see :mod:`lightdet.data.image_cache`.
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
        content: Any = None,
        on_bad_image: BadImagePolicy = "error",
        cache: CacheMode | None = None,
    ) -> None:
        self.ann_file, self.img_dir, self.source = Path(ann_file), Path(img_dir), str(ann_file)
        require_path(self.img_dir, "image folder", "img_dir", "MiddleDataset")
        file_classes, images = read_middle(self.ann_file, content)
        if file_classes is None:
            if classes is None:
                raise ValueError(
                    f"{self.ann_file}: a bare list of records has no class names; configure `classes`"
                )
            file_classes = load_class_names(classes)
        categories = [{"id": i, "name": n} for i, n in enumerate(file_classes)]
        self.class_names, file_labels = match_categories(
            classes, categories, source=self.source, num_classes=num_classes, strict=strict_classes
        )
        self.with_mask = with_mask
        to_label = np.full(len(file_classes), -1, dtype=np.int64)
        to_label[file_labels] = np.arange(len(file_labels))
        records = [self._record(m, to_label, len(file_classes)) for m in images]
        if filter_empty:
            records = [r for r in records if (~r.ignore).any()]
        logger.info("%s: %d images, %d boxes, %d classes", self.source, len(records),
                    sum(len(r) for r in records), len(self.class_names))
        self._set_records(records, pipeline, on_bad_image, cache)

    @classmethod
    def annotation_sources(
        cls,
        ann_file: str | PathLike,
        img_dir: str | PathLike | None = None,
        *,
        classes: ClassesSpec | None = None,
        content: Any = None,
        **_: Any,
    ) -> list[AnnotationSource]:
        """The file as COCO (:func:`middle_as_coco`; see :mod:`lightdet.data.sources`)."""
        read = partial(middle_as_coco, ann_file, content, classes=classes)
        return [AnnotationSource(str(ann_file), None if img_dir is None else str(img_dir), classes, read, "xyxy")]

    def _check_values(self, m: MiddleImage, num_file_classes: int) -> None:
        """Labels in range, finite boxes and, with masks, a segmentation pycocotools can rasterise per box."""
        where = f"{self.ann_file}: image {m.image_id} ({m.filename})"
        for key, labels in (("labels", m.labels), ("labels_ignore", m.labels_ignore)):
            bad = labels[(labels < 0) | (labels >= num_file_classes)]
            if bad.size:
                raise ValueError(f"{where}: `ann.{key}` has {int(bad[0])}, expected a class index in "
                                 f"0..{num_file_classes - 1}")
        finite = np.isfinite(np.concatenate((m.bboxes, m.bboxes_ignore))).all(axis=1)
        if not finite.all():
            raise ValueError(f"{where} has {int((~finite).sum())} box(es) with NaN or infinite numbers")
        if not self.with_mask:
            return
        if m.segmentations is None and len(m.bboxes):
            raise ValueError(f"{where} has no `ann.segmentations`, which with_mask=True needs")
        for segmentation in m.segmentations or []:
            problem = segmentation_problem(segmentation, m.height, m.width)
            if problem is not None:
                raise ValueError(f"{where}: a box of `ann.segmentations`: {problem}")

    def _record(self, m: MiddleImage, to_label: np.ndarray, num_file_classes: int) -> ImageRecord:
        self._check_values(m, num_file_classes)
        boxes = np.concatenate((m.bboxes, m.bboxes_ignore)).clip(0, [m.width, m.height] * 2)
        labels = to_label[np.concatenate((m.labels, m.labels_ignore))]
        ignore = np.arange(len(labels)) >= len(m.labels)
        keep = (labels >= 0) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        segms = None
        if self.with_mask:
            # an ignored box has no mask in the format: its mask is its box
            box_polys = [[[x1, y1, x2, y1, x2, y2, x1, y2]] for x1, y1, x2, y2 in m.bboxes_ignore.tolist()]
            all_segms = [*(m.segmentations or []), *box_polys]
            segms = [all_segms[j] for j in np.flatnonzero(keep)]
        return ImageRecord(
            image_id=m.image_id, file_path=os.path.join(self.img_dir, m.filename), width=m.width,
            height=m.height, boxes=boxes[keep].astype(np.float32), labels=labels[keep], ignore=ignore[keep],
            segmentations=segms,
        )

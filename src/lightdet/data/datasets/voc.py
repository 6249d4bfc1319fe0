"""Pascal VOC: ``Annotations/*.xml`` + ``JPEGImages/`` + a split list ``ImageSets/Main/<split>.txt``.

Boxes in the XML files are 1-based inclusive pixel indices; they become continuous 0-based ``xyxy``
by subtracting 1 from ``xmin``/``ymin`` (as detectron2 does), so ``x2 - x1`` is the width in pixels.
``difficult`` objects become ``ignore`` boxes. VOC names images by strings (``2008_000008``); their
integer ``image_id`` is the name with ``_`` removed when every name of the split is numeric that way,
else the 1-based position in the split list (:func:`voc_image_ids`).
"""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lightdet.categories import ClassesSpec, load_class_names
from lightdet.data.coco_format import coco_annotation, coco_categories
from lightdet.data.datasets.base import BadImagePolicy, PipelineSpec, RecordDataset
from lightdet.data.image_cache import CacheMode
from lightdet.data.records import ImageRecord
from lightdet.data.sources import AnnotationSource

__all__ = [
    "VOC_CLASSES", "VocAnnotation", "VocDataset", "parse_voc_xml", "read_voc_split", "voc_as_coco", "voc_image_ids",
]  # fmt: skip

logger = logging.getLogger(__name__)

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
    "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


@dataclass(frozen=True)
class VocAnnotation:
    """One parsed XML file (``N`` objects).

    Attributes:
        name: the image's name in the split list. filename: the image file (relative to JPEGImages).
        width, height: the image size. names: ``[N]`` class names. boxes: ``float64 [N, 4]`` 0-based
        xyxy. difficult: ``bool [N]``.
    """

    name: str
    filename: str
    width: int
    height: int
    names: list[str]
    boxes: np.ndarray
    difficult: np.ndarray


def _number(obj: ET.Element, key: str, xml_path: Path) -> float:
    node = obj.find(f"bndbox/{key}")
    try:
        return float(node.text)  # type: ignore[union-attr, arg-type]
    except (AttributeError, TypeError, ValueError):
        raise ValueError(f"{xml_path}: an <object> lacks a numeric <bndbox><{key}> (found {node!r})") from None


def _integer(node: ET.Element, key: str, xml_path: Path) -> int:
    """The integer text of ``node/key`` (0 when absent or empty)."""
    text = (node.findtext(key) or "").strip()
    try:
        value = float(text or 0)
        if not value.is_integer():
            raise ValueError
    except ValueError:
        raise ValueError(f"{xml_path}: <{key}> must be an integer, got {text[:40]!r}") from None
    return int(value)


def _image_size(root: ET.Element, image_path: Path, xml_path: Path) -> tuple[int, int]:
    """``(width, height)`` from ``<size>``, else from the image's header."""
    width, height = _integer(root, "size/width", xml_path), _integer(root, "size/height", xml_path)
    if width > 0 and height > 0:
        return width, height
    try:
        with Image.open(image_path) as img:
            return img.size
    except (OSError, ValueError) as err:
        raise ValueError(f"{xml_path}: no <size>, and its image {image_path} cannot be read ({err})") from None


def parse_voc_xml(xml_path: str | PathLike, image_dir: str | PathLike, name: str | None = None) -> VocAnnotation:
    """Reads one VOC XML file; a missing ``<size>`` is read from the image's header.

    Raises:
        ValueError: naming the XML file, when it is missing, not XML, or holds a value that is not a number.
    """
    xml_path = Path(xml_path)
    try:
        root = ET.parse(xml_path).getroot()
    except (ET.ParseError, OSError) as err:
        raise ValueError(f"{xml_path}: cannot read the VOC annotation ({err})") from err
    name = name or xml_path.stem
    filename = (root.findtext("filename") or f"{name}.jpg").strip()
    width, height = _image_size(root, Path(image_dir) / filename, xml_path)
    names, boxes, difficult = [], [], []
    for obj in root.iter("object"):
        names.append((obj.findtext("name") or "").strip())
        x1, y1, x2, y2 = (_number(obj, k, xml_path) for k in ("xmin", "ymin", "xmax", "ymax"))
        boxes.append((x1 - 1, y1 - 1, x2, y2))
        difficult.append(bool(_integer(obj, "difficult", xml_path)))
    return VocAnnotation(
        name=name, filename=filename, width=width, height=height, names=names,
        boxes=np.array(boxes, dtype=np.float64).reshape(-1, 4), difficult=np.array(difficult, dtype=bool),
    )


def voc_image_ids(names: Sequence[str]) -> list[int]:
    """Integer ids of VOC image names: ``000005 -> 5``, ``2008_000008 -> 2008000008`` (else positions)."""
    stripped = [n.replace("_", "") for n in names]
    numeric = all(s.isascii() and s.isdigit() and len(s) < 19 for s in stripped)  # int64 ids
    if numeric and len({int(s) for s in stripped}) == len(stripped):
        return [int(s) for s in stripped]
    return list(range(1, len(names) + 1))


def read_voc_split(
    split_file: str | PathLike, root: str | PathLike | None = None, *, ann_subdir: str = "Annotations",
    img_subdir: str = "JPEGImages",
) -> tuple[list[int], list[VocAnnotation]]:
    """Parses every image of a split list. ``root`` defaults to the split file's ``../../..``.

    Returns:
        ``(image_ids, annotations)`` in the order of the split file.
    """
    split_file = Path(split_file)
    if not split_file.is_file():
        raise FileNotFoundError(f"VOC split list {str(split_file)!r} does not exist (ImageSets/Main/<split>.txt)")
    root = Path(root) if root is not None else split_file.parents[2]
    try:
        text = split_file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{split_file}: a VOC split list is UTF-8 text, one image name per line ({err})") from None
    names = [ln.split()[0] for ln in text.splitlines() if ln.strip()]
    odd = next((n for n in names if not n.isprintable() or "/" in n or "\\" in n), None)
    if odd is not None:
        raise ValueError(f"{split_file}: {odd!r} is not an image name (a file name without folder or suffix)")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ValueError(f"{split_file}: image {dup!r} is listed more than once")
    anns = [parse_voc_xml(root / ann_subdir / f"{n}.xml", root / img_subdir, n) for n in names]
    return voc_image_ids(names), anns


def voc_as_coco(
    split_file: str | PathLike, root: str | PathLike | None = None, *, classes: ClassesSpec = VOC_CLASSES,
    ann_subdir: str = "Annotations", img_subdir: str = "JPEGImages", strict: bool = False,
) -> dict[str, Any]:
    """A VOC split as COCO: the XML values (0-based, not clipped), ``difficult`` as ``iscrowd: 1``,
    ``file_name`` relative to ``root/img_subdir``.

    Category ids are ``1..K`` in ``classes`` order, then the XML files' other names, sorted.

    Raises:
        ValueError: with ``strict``, naming the XML file of an object whose class is not in ``classes``.
    """
    root = Path(root) if root is not None else Path(split_file).parents[2]
    names = load_class_names(classes)
    image_ids, anns = read_voc_split(split_file, root, ann_subdir=ann_subdir, img_subdir=img_subdir)
    extra = sorted({n for a in anns for n in a.names} - set(names))
    if extra and strict:
        a = next(a for a in anns if set(a.names) & set(extra))
        name = next(n for n in a.names if n in extra)
        raise ValueError(f"{root / ann_subdir / (a.name + '.xml')}: object class {name!r} is not among the "
                         f"classes {names}; pass --classes with every class")
    cat_id = {n: i + 1 for i, n in enumerate([*names, *extra])}
    images, annotations = [], []
    for image_id, a in zip(image_ids, anns):
        images.append({"id": image_id, "file_name": a.filename, "width": a.width, "height": a.height})
        for name, box, difficult in zip(a.names, a.boxes.tolist(), a.difficult.tolist()):
            annotations.append(coco_annotation(len(annotations) + 1, image_id, cat_id[name], box, difficult))
    return {"images": images, "annotations": annotations, "categories": coco_categories([*names, *extra])}


class VocDataset(RecordDataset):
    """One split of a Pascal VOC year (or any dataset in VOC's XML layout).

    Args:
        ann_file: the split list, e.g. ``VOC2007/ImageSets/Main/trainval.txt``.
        root: the year folder holding ``Annotations/`` and ``JPEGImages/``; default ``ann_file``'s
            ``../../..``.
        classes: the configured classes (default the 20 VOC classes): a list, one bare name or a
            ``classes.txt`` path. Objects of other names are dropped (counted in the log).
        pipeline, filter_empty, num_classes: as for :class:`~lightdet.data.CocoDataset`.
        strict_classes: fail when the XML files name a class that is not configured.
        ann_subdir, img_subdir: the folder names under ``root``.
        on_bad_image: ``"error"`` (default) stops at an image that cannot be loaded, naming it; ``"skip"``
            loads another image in its place and records it (see :class:`RecordDataset`).
        cache: keep the decoded images for the run: ``"ram"`` (shared memory), ``"disk"`` (``.npy`` files
            beside the images) or None (decode on every load); see :mod:`lightdet.data.image_cache`.
    """

    def __init__(
        self,
        ann_file: str | PathLike,
        root: str | PathLike | None = None,
        *,
        classes: ClassesSpec = VOC_CLASSES,
        pipeline: PipelineSpec = None,
        filter_empty: bool = False,
        num_classes: int | None = None,
        strict_classes: bool = False,
        ann_subdir: str = "Annotations",
        img_subdir: str = "JPEGImages",
        on_bad_image: BadImagePolicy = "error",
        cache: CacheMode | None = None,
    ) -> None:
        self.source = str(ann_file)
        self.class_names = load_class_names(classes)
        if num_classes is not None and num_classes != len(self.class_names):
            raise ValueError(f"{ann_file}: num_classes={num_classes} but {len(self.class_names)} classes are "
                             f"configured ({self.class_names})")
        root = Path(root) if root is not None else Path(ann_file).parents[2]
        image_ids, anns = read_voc_split(ann_file, root, ann_subdir=ann_subdir, img_subdir=img_subdir)
        unknown = Counter(n for a in anns for n in a.names if n not in self.class_names)
        if unknown and strict_classes:
            raise ValueError(f"{ann_file}: objects of classes not configured: {dict(unknown)} (strict_classes=True); "
                             f"configured: {self.class_names}")
        label_of = {n: i for i, n in enumerate(self.class_names)}
        records = [self._record(i, a, root / img_subdir, label_of) for i, a in zip(image_ids, anns)]
        if filter_empty:
            records = [r for r in records if (~r.ignore).any()]
        logger.info("%s: %d images, %d boxes, %d classes; objects of other classes dropped: %s", ann_file,
                    len(records), sum(len(r) for r in records), len(self.class_names), dict(unknown) or "none")
        self._set_records(records, pipeline, on_bad_image, cache)

    @classmethod
    def annotation_sources(
        cls,
        ann_file: str | PathLike,
        root: str | PathLike | None = None,
        *,
        classes: ClassesSpec = VOC_CLASSES,
        ann_subdir: str = "Annotations",
        img_subdir: str = "JPEGImages",
        **_: Any,
    ) -> list[AnnotationSource]:
        """The split as COCO (:func:`voc_as_coco`; see :mod:`lightdet.data.sources`)."""
        root = Path(root) if root is not None else Path(ann_file).parents[2]
        read = partial(voc_as_coco, ann_file, root, classes=classes, ann_subdir=ann_subdir, img_subdir=img_subdir)
        return [AnnotationSource(str(ann_file), str(root / img_subdir), classes, read, "xyxy")]

    def _record(self, image_id: int, ann: VocAnnotation, img_dir: Path, label_of: dict[str, int]) -> ImageRecord:
        finite = np.isfinite(ann.boxes).all(axis=1)
        if not finite.all():
            raise ValueError(f"{self.source}: image {ann.name} has {int((~finite).sum())} box(es) with NaN or "
                             f"infinite numbers in {ann.name}.xml")
        labels = np.array([label_of.get(n, -1) for n in ann.names], dtype=np.int64)
        boxes = ann.boxes.clip(0, [ann.width, ann.height] * 2)
        keep = (labels >= 0) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return ImageRecord(
            image_id=image_id, file_path=os.path.join(img_dir, ann.filename), width=ann.width, height=ann.height,
            boxes=boxes[keep].astype(np.float32), labels=labels[keep], ignore=ann.difficult[keep],
        )

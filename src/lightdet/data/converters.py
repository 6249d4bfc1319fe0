"""Offline converters to COCO json (``lightdet-data convert ...``) and from COCO to the middle format.

Every converter returns the written dict and writes it to ``dst`` (parent folders created). Output
boxes are COCO ``xywh``; boxes to be ignored (VOC ``difficult``, middle ``bboxes_ignore``) become
``iscrowd: 1``, which :class:`~lightdet.data.CocoDataset` reads back as ``ignore`` boxes. Category ids
are ``1..K`` in class order (:mod:`lightdet.data.coco_format`).

Any dataset converts through its COCO reader (:func:`dataset_to_coco`, the dataset protocol of
:mod:`lightdet.data.sources`); ``voc_to_coco`` and ``middle_to_coco`` add the checks an offline
conversion wants (every class listed, every label in range).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

from PIL import Image

from lightdet.categories import ClassesSpec, load_class_names
from lightdet.data.coco_format import coco_annotation, coco_categories, read_coco_file, require_coco_structure
from lightdet.data.datasets.middle import middle_as_coco
from lightdet.data.datasets.voc import VOC_CLASSES, voc_as_coco
from lightdet.data.sources import read_ground_truth

__all__ = [
    "IMAGE_SUFFIXES",
    "coco_to_middle",
    "dataset_to_coco",
    "images_to_coco",
    "middle_to_coco",
    "voc_to_coco",
    "yolo_to_coco",
]

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def _write(dst: str | PathLike, data: Any) -> Any:
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(json.dumps(data), encoding="utf-8")
    return data


def dataset_to_coco(node: Mapping[str, Any], dst: str | PathLike) -> dict[str, Any]:
    """The annotation file of a dataset node (``_target_`` and its arguments), any format -> COCO json.

    What the dataset's :class:`~lightdet.data.sources.AnnotationSource` reads, as it reads it: boxes and
    classes are not clipped, dropped or remapped (the dataset does that when it loads).

    Raises:
        ValueError: when the dataset does not state its files, or reads more than one.
    """
    coco, _ = read_ground_truth(node)
    return _write(dst, coco)


def voc_to_coco(
    split_file: str | PathLike, dst: str | PathLike, *, classes: ClassesSpec = VOC_CLASSES,
    root: str | PathLike | None = None, img_root: str | PathLike | None = None,
) -> dict[str, Any]:
    """One VOC split list (``VOC2007/ImageSets/Main/test.txt``) -> COCO json.

    Args:
        split_file: the split list; ``root`` (the year folder) defaults to its ``../../..``.
        classes: the category names, in id order (default the 20 VOC classes).
        img_root: ``file_name`` is relative to it (default ``root/JPEGImages``).

    Raises:
        ValueError: naming the XML file when an object's class is not in ``classes``.
    """
    root = Path(root) if root is not None else Path(split_file).parents[2]
    data = voc_as_coco(split_file, root, classes=classes, strict=True)
    if img_root is not None:
        for image in data["images"]:
            image["file_name"] = os.path.relpath(root / "JPEGImages" / image["file_name"], img_root)
    return _write(dst, data)


def middle_to_coco(src: str | PathLike, dst: str | PathLike, *, classes: ClassesSpec | None = None) -> dict[str, Any]:
    """A middle-format JSON file -> COCO json (``bboxes_ignore`` as ``iscrowd: 1``).

    Args:
        classes: required when the file is a bare list of records (its labels index them); otherwise
            it must be None or equal the file's classes.
    """
    return _write(dst, middle_as_coco(src, classes=classes, strict=True))


def coco_to_middle(src: str | PathLike, dst: str | PathLike) -> dict[str, Any]:
    """COCO json -> middle format (classes = category names in id order; crowd -> ``bboxes_ignore``).

    Segmentations of non-crowd annotations are kept as ``ann.segmentations`` when every one has one.
    """
    data = read_coco_file(src)
    require_coco_structure(data, src)
    cats = sorted(data["categories"], key=lambda c: int(c["id"]))
    label_of = {int(c["id"]): i for i, c in enumerate(cats)}
    by_image: dict[int, list[dict[str, Any]]] = {int(img["id"]): [] for img in data["images"]}
    for a in data.get("annotations", []):
        if int(a["category_id"]) not in label_of or int(a["image_id"]) not in by_image:
            raise ValueError(f"{src}: annotation {a.get('id')} refers to category {a['category_id']} / image "
                             f"{a['image_id']}, which the file does not define")
        by_image[int(a["image_id"])].append(a)
    records = []
    for img in data["images"]:
        anns = by_image[int(img["id"])]
        ann: dict[str, Any] = {}
        for suffix, crowd in (("", False), ("_ignore", True)):
            sel = [a for a in anns if bool(a.get("iscrowd", 0)) == crowd]
            ann[f"bboxes{suffix}"] = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in sel)]
            ann[f"labels{suffix}"] = [label_of[int(a["category_id"])] for a in sel]
        plain = [a for a in anns if not a.get("iscrowd", 0)]
        if plain and all(a.get("segmentation") for a in plain):
            ann["segmentations"] = [a["segmentation"] for a in plain]
        records.append({"id": img["id"], "filename": img["file_name"], "width": img["width"],
                        "height": img["height"], "ann": ann})
    return _write(dst, {"classes": [str(c["name"]) for c in cats], "images": records})


def _list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {str(folder)!r} does not exist")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _image_entry(image_id: int, path: Path, folder: Path) -> dict[str, Any]:
    try:
        with Image.open(path) as img:
            width, height = img.size
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"{path}: not a readable image ({err})") from err
    return {"id": image_id, "file_name": path.relative_to(folder).as_posix(), "width": width, "height": height}


def images_to_coco(
    img_dir: str | PathLike, dst: str | PathLike, *, classes: ClassesSpec | None = None
) -> dict[str, Any]:
    """Every image under ``img_dir`` (recursively, sorted) -> a COCO json without annotations.

    For inference or pseudo-labelling; ``categories`` come from ``classes`` (empty without).
    """
    folder = Path(img_dir)
    images = [_image_entry(i + 1, p, folder) for i, p in enumerate(_list_images(folder))]
    cats = coco_categories(load_class_names(classes)) if classes is not None else []
    return _write(dst, {"images": images, "annotations": [], "categories": cats})


def _yolo_boxes(label_file: Path, width: int, height: int, num_classes: int) -> list[tuple[int, list[float]]]:
    """``class cx cy w h`` lines (normalised) -> ``(label, xyxy pixels)``."""
    try:
        text = label_file.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as err:
        raise ValueError(f"{label_file}: cannot read the YOLO label file ({err})") from None
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            label, (cx, cy, w, h) = int(parts[0]), (float(v) for v in parts[1:5])
        except (ValueError, IndexError):
            raise ValueError(f"{label_file}:{n}: expected 'class cx cy w h', got {line!r}") from None
        if not all(map(math.isfinite, (cx, cy, w, h))):
            raise ValueError(f"{label_file}:{n}: a box with NaN or infinite numbers: {line!r}")
        if len(parts) != 5 or not 0 <= label < num_classes:
            raise ValueError(f"{label_file}:{n}: expected 'class cx cy w h' with class in 0..{num_classes - 1}, "
                             f"got {line!r}")
        out.append((label, [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width,
                            (cy + h / 2) * height]))
    return out


def yolo_to_coco(
    img_dir: str | PathLike, dst: str | PathLike, *, classes: ClassesSpec,
    labels_dir: str | PathLike | None = None,
) -> dict[str, Any]:
    """YOLO txt labels -> COCO json.

    Args:
        img_dir: the images (searched recursively).
        classes: the class names that YOLO's class indices refer to (a list or ``classes.txt``).
        labels_dir: the folder of ``<image stem>.txt`` files mirroring ``img_dir``; default: ``img_dir``
            with a path component ``images`` replaced by ``labels`` (YOLO's layout), else ``img_dir``.
            An image without a label file has no objects.
    """
    folder, names = Path(img_dir), load_class_names(classes)
    if labels_dir is None:
        parts = ["labels" if p == "images" else p for p in folder.parts]
        labels_dir = Path(*parts) if "images" in folder.parts else folder
    images, annotations = [], []
    for i, path in enumerate(_list_images(folder)):
        entry = _image_entry(i + 1, path, folder)
        images.append(entry)
        label_file = Path(labels_dir) / path.relative_to(folder).with_suffix(".txt")
        if label_file.is_file():
            for label, box in _yolo_boxes(label_file, entry["width"], entry["height"], len(names)):
                annotations.append(coco_annotation(len(annotations) + 1, entry["id"], label + 1, box, False))
    return _write(dst, {"images": images, "annotations": annotations, "categories": coco_categories(names)})

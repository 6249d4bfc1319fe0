"""Opening an annotation file of any supported format as a dataset (tools, evaluators, notebooks)."""

from __future__ import annotations

import json
from os import PathLike
from pathlib import Path
from typing import Literal

from lightdet.data.classes import ClassesSpec
from lightdet.data.datasets.base import PipelineSpec, RecordDataset
from lightdet.data.datasets.coco import CocoDataset
from lightdet.data.datasets.middle import MiddleDataset
from lightdet.data.datasets.voc import VOC_CLASSES, VocDataset

__all__ = ["AnnotationFormat", "detect_format", "dataset_from_file"]

AnnotationFormat = Literal["coco", "middle", "voc"]


def detect_format(ann_file: str | PathLike) -> AnnotationFormat:
    """``.txt`` -> ``voc`` (a split list); JSON with ``categories`` / ``annotations`` -> ``coco``; other JSON
    -> ``middle``.

    Raises:
        ValueError: for another suffix, naming the formats that are understood.
    """
    path = Path(ann_file)
    if path.suffix == ".txt":
        return "voc"
    if path.suffix != ".json":
        raise ValueError(
            f"{path}: cannot tell the annotation format; expected a COCO or middle-format .json file or a VOC "
            "split list (ImageSets/Main/<split>.txt)"
        )
    with path.open(encoding="utf-8") as f:
        head = f.read(1 << 16)
    if head.lstrip().startswith("["):
        return "middle"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    return "coco" if isinstance(data, dict) and ("categories" in data or "annotations" in data) else "middle"


def default_image_folder(ann_file: str | PathLike, first_file_name: str | None) -> Path:
    """Where the images of a COCO / middle-format file most likely are, when no folder is given.

    The first of these folders that holds ``first_file_name`` (the file's first image): the file's own
    folder, then, beside an ``annotations/`` folder, ``<stem>/`` (``annotations/val.json`` -> ``val/``),
    ``<stem without "instances_">/`` (``instances_val2017.json`` -> ``val2017/``), ``images/`` and the
    dataset root. Falls back to the file's own folder.
    """
    path = Path(ann_file)
    root = path.parent.parent
    stem = path.stem
    candidates = [path.parent, root / stem, root / stem.removeprefix("instances_"), root / "images", root]
    if first_file_name:
        for folder in candidates:
            if (folder / first_file_name).is_file():
                return folder
    return path.parent


def dataset_from_file(
    ann_file: str | PathLike,
    img_dir: str | PathLike | None = None,
    *,
    classes: ClassesSpec | None = None,
    pipeline: PipelineSpec = None,
    with_mask: bool = False,
) -> RecordDataset:
    """The dataset of ``ann_file`` in its format (see :func:`detect_format`).

    Args:
        ann_file: a COCO json, a middle-format json or a VOC split list.
        img_dir: the image folder (VOC: the year folder); default :func:`default_image_folder` (VOC:
            ``../../..`` of the split list).
        classes: the configured classes (VOC default: the 20 VOC classes; else every class of the file).
        pipeline, with_mask: as for the datasets (``with_mask`` is ignored for VOC, which has no masks).
    """
    fmt = detect_format(ann_file)
    if fmt == "voc":
        return VocDataset(ann_file, img_dir, classes=classes or VOC_CLASSES, pipeline=pipeline)
    folder = img_dir if img_dir is not None else default_image_folder(ann_file, _first_file_name(ann_file))
    cls = CocoDataset if fmt == "coco" else MiddleDataset
    return cls(ann_file, folder, classes=classes, pipeline=pipeline, with_mask=with_mask)


def _first_file_name(ann_file: str | PathLike) -> str | None:
    """The first image's file name of a COCO (``file_name``) or middle-format (``filename``) json."""
    data = json.loads(Path(ann_file).read_text(encoding="utf-8"))
    records = data.get("images", []) if isinstance(data, dict) else data  # both formats: {"images": [...]}
    first = records[0] if isinstance(records, list) and records and isinstance(records[0], dict) else {}
    name = first.get("file_name", first.get("filename"))
    return str(name) if name else None

"""A bare annotation file of a built-in format: which dataset class reads it (the tools' FILE mode).

``lightdet-data check / browse / stats FILE`` and :func:`dataset_from_file` need a dataset class for a
file given without a config. This module is the one place that tells the built-in formats apart; a
dataset config names its class by ``_target_`` and needs none of it. A JSON file is parsed here once
and handed to the dataset as ``content``.
"""

from __future__ import annotations

from dataclasses import replace
from os import PathLike
from pathlib import Path
from typing import Any, Literal

from lightdet.categories import ClassesSpec
from lightdet.data.coco_format import first_file_name, read_json
from lightdet.data.datasets.base import PipelineSpec, RecordDataset
from lightdet.data.datasets.coco import CocoDataset
from lightdet.data.datasets.middle import MiddleDataset
from lightdet.data.datasets.voc import VOC_CLASSES, VocDataset
from lightdet.data.sources import AnnotationSource

__all__ = ["AnnotationFormat", "dataset_from_file", "default_image_folder", "detect_format", "file_sources"]

AnnotationFormat = Literal["coco", "middle", "voc"]


def _sniff(path: Path) -> tuple[AnnotationFormat, Any]:
    """The format of ``path`` and its parsed JSON (None for a VOC split list)."""
    if path.suffix == ".txt":
        return "voc", None
    if path.suffix != ".json":
        raise ValueError(
            f"{path}: cannot tell the annotation format; expected a COCO or middle-format .json file or a VOC "
            "split list (ImageSets/Main/<split>.txt)"
        )
    content = read_json(path)
    coco = isinstance(content, dict) and ("categories" in content or "annotations" in content)
    return ("coco" if coco else "middle"), content


def detect_format(ann_file: str | PathLike) -> AnnotationFormat:
    """``.txt`` -> ``voc`` (a split list); JSON with ``categories`` / ``annotations`` -> ``coco``; other JSON
    -> ``middle``.

    Raises:
        ValueError: for another suffix, naming the formats that are understood, or a file that is not JSON.
    """
    return _sniff(Path(ann_file))[0]


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


def _open(
    ann_file: str | PathLike, img_dir: str | PathLike | None, classes: ClassesSpec | None, with_mask: bool = False
) -> tuple[type[RecordDataset], dict[str, Any]]:
    """The class that reads ``ann_file`` and its arguments (image folder given or guessed, content)."""
    path = Path(ann_file)
    fmt, content = _sniff(path)
    if fmt == "voc":  # VOC has no masks
        return VocDataset, {"ann_file": path, "root": img_dir, "classes": classes or VOC_CLASSES}
    folder = img_dir if img_dir is not None else default_image_folder(path, first_file_name(content))
    cls = CocoDataset if fmt == "coco" else MiddleDataset
    return cls, {"ann_file": path, "img_dir": folder, "classes": classes, "content": content, "with_mask": with_mask}


def file_sources(
    ann_file: str | PathLike, img_dir: str | PathLike | None = None, *, classes: ClassesSpec | None = None
) -> list[AnnotationSource]:
    """The :class:`AnnotationSource` of a bare file (see :func:`dataset_from_file` for the arguments).

    Its ``classes`` are ``classes`` as given: a format's default (VOC's 20 classes) names the file's
    categories but is not a configuration to check the file against.
    """
    cls, kwargs = _open(ann_file, img_dir, classes)
    return [replace(s, classes=classes) for s in cls.annotation_sources(**kwargs)]  # type: ignore[attr-defined]


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
    cls, kwargs = _open(ann_file, img_dir, classes, with_mask)
    return cls(**kwargs, pipeline=pipeline)

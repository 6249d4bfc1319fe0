"""The ground truth an evaluator reads: COCO, given as a json path, a dict, or a callable returning one.

Evaluators never see a dataset. A dataset in another format states how to read its ground truth as
COCO (:mod:`lightdet.data.sources`); a config hands that reader to the evaluator as a callable
(``lightdet.data.CocoGroundTruth``), which is called on first use, so the files may be generated
after the evaluator is built.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["GroundTruth", "describe_ground_truth", "load_coco_ground_truth", "coco_box_arrays"]

GroundTruth = str | PathLike | Mapping[str, Any] | Callable[[], Mapping[str, Any]]
"""A COCO json path, a COCO dict (copied: pycocotools writes into the annotations it evaluates), or a
zero-argument callable returning a COCO dict (called once, on first use)."""

_REQUIRED = ("images", "categories")
_HINT = (
    "; evaluators read COCO ground truth: for a dataset in another format, give the evaluator "
    "`ann_file: {_target_: lightdet.data.CocoGroundTruth, _recursive_: false, dataset: <the dataset node>}` "
    "or convert the file (lightdet-data convert --help)"
)


def describe_ground_truth(ground_truth: GroundTruth) -> str:
    """How messages name ``ground_truth``: the path, the callable's repr, or ``<COCO dict>``."""
    if isinstance(ground_truth, (str, PathLike)):
        return str(ground_truth)
    if isinstance(ground_truth, Mapping):
        return f"<COCO dict of {len(ground_truth.get('images', []))} images>"
    return repr(ground_truth)


def _read_json(path: Path, owner: str) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{owner}: annotation file {str(path)!r} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}){_HINT}") from e


def load_coco_ground_truth(ground_truth: GroundTruth, owner: str) -> dict[str, Any]:
    """Reads ``ground_truth`` (see :data:`GroundTruth`) into a COCO dict that the caller owns.

    Args:
        owner: the evaluator, named when the file does not exist.

    Raises:
        FileNotFoundError, ValueError: naming the file, when it is missing, not JSON, or lacks
            ``images`` / ``categories``.
        TypeError: for another kind of value.
    """
    source = describe_ground_truth(ground_truth)
    if isinstance(ground_truth, (str, PathLike)):
        data = _read_json(Path(ground_truth), owner)
    elif isinstance(ground_truth, Mapping):
        data = copy.deepcopy(dict(ground_truth))
    elif callable(ground_truth):
        data = ground_truth()
    else:
        raise TypeError(
            f"{owner}: ground truth must be a COCO json path, a COCO dict or a callable returning one, "
            f"got {type(ground_truth).__name__}"
        )
    missing = [k for k in _REQUIRED if not isinstance(data, Mapping) or k not in data]
    if missing:
        raise ValueError(f"{source}: not a COCO annotation file (missing top-level keys {missing}){_HINT}")
    return dict(data)


def coco_box_arrays(
    coco: Mapping[str, Any], cat_ids: list[int], source: str
) -> dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per image, its boxes of the categories ``cat_ids`` as the datasets read them.

    Boxes are ``xyxy`` clipped to the image, zero-size boxes dropped, crowd regions marked ignore;
    within an image the file's order is kept (VOC matching breaks IoU ties by it).

    Returns:
        ``{image_id: (boxes float32 [G, 4], labels int64 [G] (index into cat_ids), ignore bool [G])}``
        for every image of the file, those without boxes included.
    """
    size_of = {int(img["id"]): (float(img["width"]), float(img["height"])) for img in coco["images"]}
    label_of = {c: k for k, c in enumerate(cat_ids)}
    per_image: dict[int, list[tuple[list[float], int, bool]]] = {i: [] for i in size_of}
    for ann in coco.get("annotations", []):
        try:
            image_id, cat_id, (x, y, w, h) = int(ann["image_id"]), int(ann["category_id"]), ann["bbox"]
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{source}: annotation {ann.get('id', '?')} lacks image_id, category_id or a "
                             "4-number bbox") from None
        if image_id not in size_of:
            raise ValueError(f"{source}: annotation {ann.get('id', '?')} refers to image {image_id}, which "
                             "is not in `images`")
        if cat_id in label_of:
            per_image[image_id].append(([x, y, x + w, y + h], label_of[cat_id], bool(ann.get("iscrowd", 0))))
    return {i: _image_arrays(boxes, size_of[i]) for i, boxes in per_image.items()}


def _image_arrays(
    entries: list[tuple[list[float], int, bool]], size: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    boxes = np.array([e[0] for e in entries], dtype=np.float64).reshape(-1, 4).clip(0, [*size, *size])
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    labels = np.array([e[1] for e in entries], dtype=np.int64)
    ignore = np.array([e[2] for e in entries], dtype=bool)
    return boxes[keep].astype(np.float32), labels[keep], ignore[keep]

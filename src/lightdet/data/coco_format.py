"""Reading and writing COCO dicts: what every format's COCO reader and the converters share.

Written boxes are COCO ``xywh``; boxes to ignore (VOC ``difficult``, middle ``bboxes_ignore``) are
``iscrowd: 1``, which :class:`~lightdet.data.CocoDataset` reads back as ``ignore`` boxes. Category ids
are ``1..K`` in class order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["coco_annotation", "coco_categories", "first_file_name", "polygon_area", "read_json", "read_coco_file"]


def read_json(path: str | PathLike, hint: str = "") -> Any:
    """The parsed JSON of ``path``.

    Raises:
        FileNotFoundError: when it does not exist. ValueError: naming the file when it is not JSON
            (``hint`` is appended to that message).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {str(path)!r} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err}){hint}") from err


def read_coco_file(
    path: str | PathLike, content: Any = None, required: Sequence[str] = ("images", "categories")
) -> dict[str, Any]:
    """A COCO json file as a dict (``content``: its JSON when already parsed), with the ``required`` keys.

    Raises:
        ValueError: naming the file, when it is not JSON or not a COCO dict with those keys.
    """
    data = read_json(path) if content is None else content
    missing = [k for k in required if not isinstance(data, dict) or k not in data]
    if not isinstance(data, dict) or missing:
        raise ValueError(f"{path}: not a COCO annotation file (missing top-level keys {missing})")
    return data


def first_file_name(content: Any) -> str | None:
    """The first image's file name of a parsed COCO (``file_name``) or middle-format (``filename``) json."""
    records = content.get("images", []) if isinstance(content, dict) else content  # both: {"images": [...]}
    first = records[0] if isinstance(records, list) and records and isinstance(records[0], dict) else {}
    name = first.get("file_name", first.get("filename"))
    return str(name) if name else None


def coco_categories(names: Sequence[str]) -> list[dict[str, Any]]:
    """``[{"id": 1, "name": names[0]}, ...]``."""
    return [{"id": i + 1, "name": n} for i, n in enumerate(names)]


def polygon_area(segmentation: Any, fallback: float) -> float:
    """Shoelace area of a polygon list (COCO's ``area`` of a polygon); ``fallback`` for RLE or none."""
    if not isinstance(segmentation, list) or not segmentation:
        return fallback
    total = 0.0
    for poly in segmentation:
        xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        total += 0.5 * abs(float(np.dot(xy[:, 0], np.roll(xy[:, 1], 1)) - np.dot(xy[:, 1], np.roll(xy[:, 0], 1))))
    return total


def coco_annotation(
    ann_id: int, image_id: int, cat_id: int, xyxy: Sequence[float], crowd: bool, segmentation: Any = None
) -> dict[str, Any]:
    """One COCO annotation from an ``xyxy`` box (kept as given: not clipped, even when empty)."""
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    # rounded to 1e-6 px: undoes the float noise of an xywh -> xyxy -> xywh round trip
    xywh = [round(v, 6) for v in (x1, y1, x2 - x1, y2 - y1)]
    ann = {"id": ann_id, "image_id": image_id, "category_id": cat_id, "bbox": xywh,
           "area": polygon_area(segmentation, (x2 - x1) * (y2 - y1)), "iscrowd": int(crowd)}
    if segmentation is not None:
        ann["segmentation"] = segmentation
    return ann

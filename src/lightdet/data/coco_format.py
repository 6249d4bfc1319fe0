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

__all__ = [
    "coco_annotation", "coco_categories", "coco_problems", "first_file_name", "is_integral", "polygon_area",
    "read_coco_file", "read_json", "require_coco_structure",
]


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
        return json.loads(path.read_text(encoding="utf-8-sig"))
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


# -- structure ------------------------------------------------------------------------------------------
_MAX_PROBLEMS = 1000  # a file broken throughout is described by its first problems


def is_integral(value: Any) -> bool:
    """An integer (or an integral float, as some tools write ids) that fits int64."""
    integral = (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, float) and value.is_integer())
    return integral and -(2**63) <= value < 2**63


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_CHECKS: dict[str, tuple[Any, str]] = {
    "int": (is_integral, "an integer"),
    "size": (lambda v: is_integral(v) and v > 0, "a positive integer"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "box": (lambda v: isinstance(v, list) and len(v) == 4 and all(map(_is_number, v)), "4 numbers"),
    "flag": (lambda v: v in (0, 1) and (is_integral(v) or isinstance(v, bool)), "0 or 1"),
    "number": (_is_number, "a number"),
    "segmentation": (lambda v: isinstance(v, (list, dict)), "a list of polygons or an RLE object"),
}
# section -> (what an entry is called, {key: (check, required)})
_SECTIONS: dict[str, tuple[str, dict[str, tuple[str, bool]]]] = {
    "images": ("image", {"id": ("int", True), "file_name": ("str", True), "width": ("size", True),
                         "height": ("size", True)}),
    "annotations": ("annotation", {"id": ("int", True), "image_id": ("int", True), "category_id": ("int", True),
                                   "bbox": ("box", True), "iscrowd": ("flag", False), "area": ("number", False),
                                   "segmentation": ("segmentation", False)}),
    "categories": ("category", {"id": ("int", True), "name": ("str", True)}),
}


def _entry_problems(entry: Any, section: str, index: int) -> list[tuple[str, str]]:
    """What is wrong with ``data[section][index]`` (type and presence of the keys lightdet reads)."""
    noun, fields = _SECTIONS[section]
    if not isinstance(entry, dict):
        return [(section, f"{section}[{index}] is {type(entry).__name__} {str(entry)[:40]!r}, not an object")]
    entry_id = entry.get("id")
    where = f"{noun} {entry_id} ({section}[{index}])" if is_integral(entry_id) else f"{section}[{index}]"
    problems = []
    for key, (check, required) in fields.items():
        if key not in entry:
            if required:
                problems.append((section, f"{where} lacks `{key}`"))
            continue
        test, expected = _CHECKS[check]
        if (entry[key] is not None or required) and not test(entry[key]):
            problems.append((section, f"{where}: `{key}` must be {expected}, got {str(entry[key])[:60]!r}"))
    return problems


def coco_problems(data: Any) -> list[tuple[str, str]]:
    """What keeps a parsed COCO file from being read, as ``(section, message)``: a top level that is not an
    object (section ``"file"``), ``images`` / ``annotations`` / ``categories`` that are not lists, and entries
    with a missing key or a value of the wrong type. NaN and infinite numbers pass: they are values, which
    the readers and ``lightdet-data check`` judge. At most 1000 problems."""
    if not isinstance(data, dict):
        return [("file", f"the file holds {type(data).__name__}, not a COCO object with images/annotations/"
                 "categories")]
    problems: list[tuple[str, str]] = []
    for section in _SECTIONS:
        entries = data.get(section, [])
        if not isinstance(entries, list):
            problems.append(("file", f"`{section}` is {type(entries).__name__}, not a list"))
            continue
        for index, entry in enumerate(entries):
            problems += _entry_problems(entry, section, index)
            if len(problems) >= _MAX_PROBLEMS:
                return problems[:_MAX_PROBLEMS]
    return problems


def require_coco_structure(data: Any, path: str | PathLike) -> None:
    """Raises ``ValueError`` naming ``path`` and the first of :func:`coco_problems` (with their count)."""
    problems = coco_problems(data)
    if problems:
        more = f"; {len(problems) - 1} more problem(s) (`lightdet-data check {path}` lists them)"
        raise ValueError(f"{path}: malformed COCO file: {problems[0][1]}{more if len(problems) > 1 else ''}")

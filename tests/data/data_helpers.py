"""COCO fixture data shared by the data tests (imported by name; conftest only holds fixtures)."""

from __future__ import annotations

from typing import Any

CATEGORIES = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 5, "name": "person"}]


def _ann(ann_id: int, image_id: int, cat: int, bbox: list[float], **extra: Any) -> dict[str, Any]:
    x, y, w, h = bbox
    poly = [x, y, x + w, y, x + w, y + h, x, y + h]
    return {"id": ann_id, "image_id": image_id, "category_id": cat, "bbox": bbox, "area": w * h,
            "iscrowd": 0, "segmentation": [poly], **extra}


def _square_rle(start: int, side: int, height: int, width: int) -> dict[str, Any]:
    """Uncompressed (column-major) RLE of the square ``[start, start + side)^2``, as COCO crowd uses."""
    counts = [start * height + start] + [side, height - side] * (side - 1) + [side]
    return {"counts": counts + [height * width - sum(counts)], "size": [height, width]}


def default_coco() -> dict[str, Any]:
    """Three images (40x30, 30x50, 20x20), five annotations, categories with a gap in the ids."""
    return {
        "images": [
            {"id": 10, "file_name": "a.jpg", "width": 40, "height": 30},
            {"id": 11, "file_name": "b.png", "width": 30, "height": 50},
            {"id": 12, "file_name": "c.jpg", "width": 20, "height": 20},
        ],
        "annotations": [
            _ann(1, 10, 1, [2, 3, 10, 8]),
            _ann(2, 10, 5, [20, 5, 15, 20]),
            _ann(3, 11, 2, [0, 10, 25, 30]),
            _ann(4, 11, 5, [5, 5, 0, 4]),  # zero width: skipped
            _ann(5, 11, 1, [1, 1, 8, 8], iscrowd=1, segmentation=_square_rle(1, 8, height=50, width=30)),
        ],
        "categories": CATEGORIES,
    }

"""Writers of tiny VOC / middle-format fixtures for the data tests (imported by name)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# name -> (width, height, [(class, xmin, ymin, xmax, ymax, difficult)]), 1-based inclusive like VOC
VOC_IMAGES: dict[str, tuple[int, int, list[tuple[str, int, int, int, int, int]]]] = {
    "000005": (48, 32, [("cat", 3, 4, 20, 30, 0), ("dog", 25, 2, 47, 20, 1)]),
    "000007": (40, 40, [("dog", 1, 1, 40, 40, 0), ("cat", 10, 10, 15, 18, 0), ("bird", 2, 2, 9, 9, 0)]),
    "000009": (36, 30, []),
}


def _object_xml(name: str, x1: int, y1: int, x2: int, y2: int, difficult: int) -> str:
    return (f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox><xmin>{x1}</xmin>"
            f"<ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>")


def write_voc(root: Path, images: dict[str, Any] | None = None, split: str = "trainval") -> Path:
    """Writes ``root/{Annotations,JPEGImages,ImageSets/Main/<split>.txt}``; returns the split file."""
    images = VOC_IMAGES if images is None else images
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, (w, h, objects) in images.items():
        body = "".join(_object_xml(*o) for o in objects)
        xml = (f"<annotation><filename>{name}.jpg</filename><size><width>{w}</width><height>{h}</height>"
               f"<depth>3</depth></size>{body}</annotation>")
        (root / "Annotations" / f"{name}.xml").write_text(xml)
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{name}.jpg")
    split_file = root / "ImageSets" / "Main" / f"{split}.txt"
    split_file.write_text("".join(f"{n}\n" for n in images))
    return split_file


def middle_data() -> dict[str, Any]:
    """Two images, classes [cat, dog, person]; one ignored box."""
    return {
        "classes": ["cat", "dog", "person"],
        "images": [
            {"filename": "a.jpg", "width": 40, "height": 30, "id": 3,
             "ann": {"bboxes": [[2, 3, 12, 11], [20, 5, 35, 25]], "labels": [0, 2],
                     "bboxes_ignore": [[0, 0, 4, 4]], "labels_ignore": [1]}},
            {"filename": "b.jpg", "width": 30, "height": 50, "ann": {"bboxes": [[0, 10, 25, 40]], "labels": [1]}},
        ],
    }


def write_middle(root: Path, data: Any | None = None) -> Path:
    """Writes ``root/middle.json`` and random images for its records into ``root/img``."""
    data = middle_data() if data is None else data
    (root / "img").mkdir(parents=True, exist_ok=True)
    records = data["images"] if isinstance(data, dict) else data
    rng = np.random.default_rng(1)
    for r in records:
        pixels = rng.integers(0, 255, (r["height"], r["width"], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "img" / r["filename"])
    path = root / "middle.json"
    path.write_text(json.dumps(data))
    return path


# rows of the user's CSV format of user_format.py: file_name, width, height, x1, y1, x2, y2, class
CSV_SIZES = {"a.jpg": (40, 30), "b.jpg": (30, 50), "c.jpg": (20, 20)}
CSV_TRAIN = ["a.jpg,40,30,2,3,12,11,cat", "a.jpg,40,30,20,5,35,25,dog", "b.jpg,30,50,0,10,25,40,dog", "c.jpg,20,20,,,,,"]
CSV_VAL = ["a.jpg,40,30,2,3,12,11,cat", "b.jpg,30,50,0,10,25,40,dog", "b.jpg,30,50,5,5,29,45,bird"]


def write_csv(root: Path, rows: list[str], name: str = "train.csv", images: str = "img") -> Path:
    """Writes ``root/<name>`` and the images of ``CSV_SIZES`` into ``root/<images>``; returns the CSV file."""
    (root / images).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    for file_name, (w, h) in CSV_SIZES.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / images / file_name)
    path = root / name
    path.write_text("".join(f"{r}\n" for r in rows))
    return path

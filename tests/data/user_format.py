"""A user's own dataset format, written outside lightdet as tutorial 2 shows (``user_format.CsvDataset``).

One CSV row per box, ``file_name,width,height,x1,y1,x2,y2,class``; an image without boxes is one row with
empty box fields. Nothing in lightdet knows this format: the tools reach it through
``CsvDataset.annotation_sources``.
"""

from __future__ import annotations

import csv
import os
from functools import partial
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from lightdet.categories import ClassesSpec, load_class_names
from lightdet.data import AnnotationSource, ImageRecord, RecordDataset
from lightdet.data.coco_format import coco_annotation, coco_categories


def read_csv_as_coco(csv_file: str | PathLike, classes: ClassesSpec) -> dict[str, Any]:
    """The file as COCO with its own values: category ids 1..K in ``classes`` order, then unknown names."""
    names = load_class_names(classes)
    images: dict[str, dict[str, Any]] = {}
    boxes: list[tuple[int, list[float], str]] = []
    with Path(csv_file).open(newline="", encoding="utf-8") as f:
        for file_name, width, height, *box, name in csv.reader(f):
            image = images.setdefault(
                file_name, {"id": len(images) + 1, "file_name": file_name, "width": int(width), "height": int(height)}
            )
            if name:
                boxes.append((image["id"], [float(v) for v in box], name))
    names += sorted({name for _, _, name in boxes} - set(names))
    annotations = [coco_annotation(i + 1, image_id, names.index(name) + 1, box, crowd=False)
                   for i, (image_id, box, name) in enumerate(boxes)]
    return {"images": list(images.values()), "annotations": annotations, "categories": coco_categories(names)}


class CsvDataset(RecordDataset):
    """A CSV file of boxes and its image folder; rows of classes not in ``classes`` are dropped."""

    def __init__(
        self, csv_file: str | PathLike, img_dir: str | PathLike, *, classes: ClassesSpec, pipeline: Any = None,
        cache: str | None = None,
    ) -> None:
        self.source, self.class_names = str(csv_file), load_class_names(classes)
        coco = read_csv_as_coco(csv_file, self.class_names)
        records = []
        for image in coco["images"]:
            anns = [a for a in coco["annotations"] if a["image_id"] == image["id"]
                    and a["category_id"] <= len(self.class_names)]
            xyxy = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], dtype=np.float32)
            records.append(ImageRecord(
                image_id=image["id"], file_path=os.path.join(img_dir, image["file_name"]), width=image["width"],
                height=image["height"], boxes=xyxy.reshape(-1, 4).clip(0, [image["width"], image["height"]] * 2),
                labels=np.array([a["category_id"] - 1 for a in anns], dtype=np.int64),
                ignore=np.zeros(len(anns), dtype=bool),
            ))
        self._set_records(records, pipeline, cache=cache)

    @classmethod
    def annotation_sources(
        cls, csv_file: str | PathLike, img_dir: str | PathLike, *, classes: ClassesSpec, **_: Any
    ) -> list[AnnotationSource]:
        read = partial(read_csv_as_coco, csv_file, classes)
        return [AnnotationSource(str(csv_file), str(img_dir), classes, read, box_format="xyxy")]

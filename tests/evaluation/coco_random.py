"""Random COCO ground truth and detections for the evaluator tests (imported by them and by conftest)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lightdet.structures import Detections, ImageMeta

# Category ids are deliberately non-contiguous and unordered; "kite" has no annotation at all.
CATEGORIES = [
    {"id": 7, "name": "dog"},
    {"id": 1, "name": "cat"},
    {"id": 3, "name": "bird"},
    {"id": 12, "name": "kite"},
]
ANNOTATED_IDS = [7, 1, 3]


@dataclass
class RandomCoco:
    """A random COCO ground truth file and detections for all of its images.

    Attributes:
        ann_file: path of the json.
        gt: the json content.
        detections: per image (in ``metas`` order), labels being indices into ``label_cat_ids``.
        metas: one per image of the file.
        label_cat_ids: category id of each label (all categories, by id: the evaluator's default).
    """

    ann_file: Path
    gt: dict[str, Any]
    detections: list[Detections]
    metas: list[ImageMeta]
    label_cat_ids: list[int]

    def results(self, image_ids: set[int] | None = None) -> list[dict[str, Any]]:
        """Reference COCO results (float64 xywh) built independently of the evaluator."""
        out = []
        for det, meta in zip(self.detections, self.metas):
            if image_ids is not None and meta.image_id not in image_ids:
                continue
            boxes = det.boxes.double().numpy()
            for box, score, label in zip(boxes, det.scores.tolist(), det.labels.tolist()):
                x1, y1, x2, y2 = box.tolist()
                out.append({
                    "image_id": meta.image_id,
                    "category_id": self.label_cat_ids[label],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": score,
                })  # fmt: skip
        return out


def _quarter(rng: np.random.Generator, low: float, high: float, size: Any = None) -> np.ndarray:
    """Random values on a 0.25 px grid: exact in float32, so xyxy <-> xywh round trips are exact."""
    return np.round(rng.uniform(low, high, size) * 4) / 4


def _random_gt_boxes(rng: np.random.Generator, h: int, w: int, n: int) -> np.ndarray:
    """``[n, 4]`` xywh boxes inside an ``h x w`` image with sides from 4 px to the image size."""
    bw = np.minimum(_quarter(rng, 4, w, n) * rng.choice([0.1, 0.4, 1.0], n), w - 1).clip(4)
    bh = np.minimum(_quarter(rng, 4, h, n) * rng.choice([0.1, 0.4, 1.0], n), h - 1).clip(4)
    x = _quarter(rng, 0, 1, n) * (w - bw)
    y = _quarter(rng, 0, 1, n) * (h - bh)
    return np.round(np.stack([x, y, bw, bh], 1) * 4) / 4


def _detections_for(rng: np.random.Generator, gt_xywh: np.ndarray, gt_labels: list[int], h: int, w: int):
    """Jittered copies of most ground-truth boxes (some with a wrong label) plus random false positives."""
    boxes, labels = [], []
    for (x, y, bw, bh), label in zip(gt_xywh, gt_labels):
        if rng.random() < 0.75:
            jitter = _quarter(rng, -0.15, 0.15, 4) * np.array([bw, bh, bw, bh])
            x1, y1 = x + jitter[0], y + jitter[1]
            boxes.append([x1, y1, x1 + max(bw + jitter[2], 1.0), y1 + max(bh + jitter[3], 1.0)])
            labels.append(label if rng.random() < 0.85 else int(rng.integers(0, len(CATEGORIES))))
    for _ in range(int(rng.integers(0, 4))):
        x1, y1 = _quarter(rng, 0, w - 8), _quarter(rng, 0, h - 8)
        boxes.append([x1, y1, x1 + _quarter(rng, 2, w / 2), y1 + _quarter(rng, 2, h / 2)])
        labels.append(int(rng.integers(0, len(CATEGORIES))))
    grid = np.round(np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * 4) / 4
    boxes_t = torch.tensor(grid, dtype=torch.float32)
    scores = torch.from_numpy(rng.uniform(0.05, 1.0, len(labels))).float()
    return Detections(boxes=boxes_t, scores=scores, labels=torch.tensor(labels, dtype=torch.int64))


def make_random_coco(path: Path, seed: int = 0, num_images: int = 14) -> RandomCoco:
    """Writes a random COCO file: empty images, crowd boxes, all COCO area ranges, varied image sizes."""
    rng = np.random.default_rng(seed)
    label_cat_ids = sorted(c["id"] for c in CATEGORIES)
    images, annotations, detections, metas = [], [], [], []
    for i in range(num_images):
        image_id, h, w = 100 + 3 * i, int(rng.integers(40, 320)), int(rng.integers(40, 320))
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "height": h, "width": w})
        n = 0 if i < 2 else int(rng.integers(1, 7))
        xywh = _random_gt_boxes(rng, h, w, n)
        labels = [label_cat_ids.index(int(c)) for c in rng.choice(ANNOTATED_IDS, n)]
        for box, label in zip(xywh, labels):
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": label_cat_ids[label],
                "bbox": box.tolist(), "area": float(box[2] * box[3]), "iscrowd": int(rng.random() < 0.1),
            })  # fmt: skip
        detections.append(_detections_for(rng, xywh, labels, h, w))
        metas.append(ImageMeta(image_id, f"{image_id}.jpg", ori_size=(h, w), img_size=(h, w)))
    gt = {"images": images, "annotations": annotations, "categories": CATEGORIES}
    path.write_text(json.dumps(gt), encoding="utf-8")
    return RandomCoco(path, gt, detections, metas, label_cat_ids)

"""Fixtures of the analysis tests: a small shapes ground truth and seeded detections with every kind of error."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from lightdet.data.synthetic import make_shapes


def noisy_results(gt: dict[str, Any], seed: int = 0) -> list[dict[str, Any]]:
    """COCO results from ``gt``: jittered boxes (localisation errors), some wrong classes, some objects missed,
    duplicates, and boxes on the background, with scores that rank the good boxes higher on average."""
    rng = random.Random(seed)
    cats = [c["id"] for c in gt["categories"]]
    sizes = {im["id"]: (im["width"], im["height"]) for im in gt["images"]}
    results = []
    for ann in gt["annotations"]:
        if rng.random() < 0.15:
            continue  # missed
        x, y, w, h = ann["bbox"]
        jitter = rng.choice([0.02, 0.05, 0.15])
        box = [x + rng.gauss(0, jitter) * w, y + rng.gauss(0, jitter) * h, w * rng.uniform(0.9, 1.1), h * rng.uniform(0.9, 1.1)]
        wrong = rng.random() < 0.1
        label = rng.choice([c for c in cats if c != ann["category_id"]]) if wrong else ann["category_id"]
        score = rng.uniform(0.3, 0.7) if wrong or jitter > 0.1 else rng.uniform(0.5, 1.0)
        results.append({"image_id": ann["image_id"], "category_id": label, "bbox": box, "score": score})
        if rng.random() < 0.1:
            results.append({"image_id": ann["image_id"], "category_id": label, "bbox": box, "score": score * 0.5})
    for image_id, (width, height) in sizes.items():
        for _ in range(rng.randint(0, 2)):
            side = rng.uniform(10, 30)
            results.append({"image_id": image_id, "category_id": rng.choice(cats), "score": rng.uniform(0.0, 0.6),
                            "bbox": [rng.uniform(0, width - side), rng.uniform(0, height - side), side, side]})
    return results


@pytest.fixture(scope="session")
def shapes_val(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """``(annotations/val.json, val image folder)`` of a 40-image shapes validation split."""
    root = tmp_path_factory.mktemp("analysis_data") / "shapes"
    make_shapes(root, num_train=1, num_val=40, seed=0)
    return root / "annotations" / "val.json", root / "val"


@pytest.fixture(scope="session")
def results_file(shapes_val: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seeded noisy results of ``shapes_val`` as a COCO results JSON file."""
    gt = json.loads(shapes_val[0].read_text())
    path = tmp_path_factory.mktemp("analysis_results") / "results.json"
    path.write_text(json.dumps(noisy_results(gt)))
    return path

"""COCO bbox evaluation: lightdet's CocoEvaluator end to end vs pycocotools' COCOeval, same data, side by side.

Both read the ground truth from the same json file. lightdet: ``process()`` over batches of ``Detections``
(as a validation loop calls it) + ``compute()``. pycocotools: ``loadRes`` of the same results +
``evaluate`` + ``accumulate`` + ``summarize``. The data is a
seeded synthetic COCO set (by default 2000 images, ~15k ground-truth boxes, 60k detections, 80 classes,
crowd boxes included). The two alternate; medians of the runs and their ratio are printed, with both sets of
stats (they must agree).

    python scripts/bench/coco_eval.py                       # 2000 images, 3 runs each
    python scripts/bench/coco_eval.py --images 500 --runs 5 --backend faster_coco_eval
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lightdet.evaluation import BACKENDS, CocoEvaluator
from lightdet.structures import Detections, ImageMeta


def make_data(num_images: int, gt_per_image: float, dt_per_image: int, num_classes: int, seed: int):
    """A COCO ground-truth dict, per-image Detections (labels 0..K-1) and metas, seeded."""
    rng = np.random.default_rng(seed)
    images, annotations, detections, metas = [], [], [], []
    for i in range(num_images):
        h, w = int(rng.integers(400, 641)), int(rng.integers(400, 641))
        images.append({"id": i + 1, "file_name": f"{i}.jpg", "height": h, "width": w})
        n = int(rng.poisson(gt_per_image))
        xy = rng.uniform(0, 0.8, (n, 2)) * [w, h]
        wh = rng.uniform(4, 0.4 * min(h, w), (n, 2))
        labels = rng.integers(0, num_classes, n)
        for b, (x, y), (bw, bh), c in zip(range(n), xy, wh, labels):
            annotations.append({
                "id": len(annotations) + 1, "image_id": i + 1, "category_id": int(c) + 1,
                "bbox": [float(x), float(y), float(bw), float(bh)], "area": float(bw * bh),
                "iscrowd": int(rng.random() < 0.01 and b == 0),
            })  # fmt: skip
        # detections: jittered copies of the ground truth plus random boxes, random scores
        k = dt_per_image
        base = np.concatenate([xy, xy + wh], 1) if n else np.zeros((0, 4))
        pick = rng.integers(0, max(n, 1), k)
        jitter = rng.normal(0, 6, (k, 4))
        random_boxes = np.concatenate([rng.uniform(0, 0.7, (k, 2)) * [w, h], np.zeros((k, 2))], 1)
        random_boxes[:, 2:] = random_boxes[:, :2] + rng.uniform(8, 200, (k, 2))
        use_gt = (rng.random(k) < 0.5) & (n > 0)
        boxes = np.where(use_gt[:, None], base[pick % max(n, 1)] + jitter if n else random_boxes, random_boxes)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        det_labels = np.where(use_gt & (rng.random(k) < 0.8), labels[pick % max(n, 1)] if n else 0, rng.integers(0, num_classes, k))
        detections.append(Detections(
            boxes=torch.tensor(boxes, dtype=torch.float32), scores=torch.tensor(rng.random(k), dtype=torch.float32),
            labels=torch.tensor(det_labels, dtype=torch.int64),
        ))  # fmt: skip
        metas.append(ImageMeta(image_id=i + 1, file_name=f"{i}.jpg", ori_size=(h, w), img_size=(h, w)))
    categories = [{"id": c + 1, "name": f"class{c}"} for c in range(num_classes)]
    return {"images": images, "annotations": annotations, "categories": categories}, detections, metas


def run_lightdet(gt_file: Path, classes: list[str], detections, metas, backend: str, batch: int) -> np.ndarray:
    evaluator = CocoEvaluator(str(gt_file), classes, backend=backend, classwise=False)
    for start in range(0, len(metas), batch):
        evaluator.process(detections[start : start + batch], metas[start : start + batch])
    result = evaluator.compute()
    return np.array([result.metrics[k] for k in result.metrics])


def run_pycocotools(gt_file: Path, results: list[dict]) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(gt_file))
        dt = coco.loadRes(results)
        ev = COCOeval(coco, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats)


def as_results(detections, metas) -> list[dict]:
    return [
        {"image_id": m.image_id, "category_id": int(c) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(s)}
        for d, m in zip(detections, metas)
        for (x1, y1, x2, y2), s, c in zip(d.boxes.tolist(), d.scores.tolist(), d.labels.tolist())
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--gt-per-image", type=float, default=7.5)
    p.add_argument("--dt-per-image", type=int, default=30)
    p.add_argument("--classes", type=int, default=80)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--batch", type=int, default=8, help="images per process() call")
    p.add_argument("--backend", default="hotcoco", choices=BACKENDS)
    args = p.parse_args()
    gt, detections, metas = make_data(args.images, args.gt_per_image, args.dt_per_image, args.classes, seed=0)
    print(f"{len(gt['images'])} images, {len(gt['annotations'])} ground-truth boxes, "
          f"{sum(len(d) for d in detections)} detections, {args.classes} classes; backend {args.backend}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        gt_file = Path(tmp) / "gt.json"
        gt_file.write_text(json.dumps(gt))
        ours, ref = [], []
        for _ in range(args.runs):  # alternate so that machine noise hits both alike
            t = time.perf_counter()
            classes = [c["name"] for c in gt["categories"]]
            stats_ours = run_lightdet(gt_file, classes, detections, metas, args.backend, args.batch)
            ours.append(time.perf_counter() - t)
            t = time.perf_counter()
            stats_ref = run_pycocotools(gt_file, as_results(detections, metas))
            ref.append(time.perf_counter() - t)
    a, b = statistics.median(ours), statistics.median(ref)
    print(f"lightdet ({args.backend}) {a:7.3f} s   pycocotools {b:7.3f} s   ratio {a / b:.3f}")
    print("lightdet   ", np.round(stats_ours, 4).tolist())
    print("pycocotools", np.round(stats_ref, 4).tolist())
    print(f"max |difference| of the 12 stats: {np.abs(stats_ours - stats_ref).max():.2e}")


if __name__ == "__main__":
    main()

"""segm evaluation on random bitmap masks (RLE ground truth, crowd regions included) against pycocotools."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from lightdet.evaluation import COCO_STAT_NAMES, CocoEvaluator
from lightdet.structures import Detections, ImageMeta


def blob(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A random blob: a thresholded upsampled noise patch placed somewhere in the image, ``uint8 [h, w]``."""
    ph, pw = int(rng.integers(4, h // 2 + 4)), int(rng.integers(4, w // 2 + 4))
    patch = torch.nn.functional.interpolate(torch.from_numpy(rng.random((1, 1, 4, 4))), size=(ph, pw),
                                            mode="bilinear")[0, 0].numpy() > 0.5
    out = np.zeros((h, w), dtype=np.uint8)
    y, x = int(rng.integers(0, max(h - ph, 1))), int(rng.integers(0, max(w - pw, 1)))
    out[y : y + ph, x : x + pw] = patch[: h - y, : w - x]
    return out


def rle_json(mask: np.ndarray) -> dict[str, Any]:
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def write_dataset(path: Path, seed: int) -> tuple[list[Detections], list[ImageMeta], list[dict[str, Any]]]:
    rng = np.random.default_rng(seed)
    images, anns, dets, metas, ref = [], [], [], [], []
    for i in range(8):
        h, w = int(rng.integers(24, 80)), int(rng.integers(24, 80))
        images.append({"id": i + 1, "file_name": f"{i}.png", "height": h, "width": w})
        pred_masks, labels = [], []
        for _ in range(int(rng.integers(0, 5))):
            gt, crowd = blob(rng, h, w), int(rng.random() < 0.15)
            if not gt.any():
                continue
            bbox = [float(v) for v in mask_utils.toBbox(mask_utils.encode(np.asfortranarray(gt)))]
            cat = int(rng.integers(1, 3))
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cat, "bbox": bbox,
                         "segmentation": rle_json(gt), "area": float(gt.sum()), "iscrowd": crowd})
            keep = rng.random((h, w)) < 0.9  # a noisy copy of the ground truth ...
            pred_masks.append((gt.astype(bool) & keep) | (blob(rng, h, w).astype(bool) & ~keep))
            labels.append(cat - 1 if rng.random() < 0.85 else int(rng.integers(0, 2)))
        if rng.random() < 0.5:  # ... and a false positive
            pred_masks.append(blob(rng, h, w).astype(bool))
            labels.append(int(rng.integers(0, 2)))
        masks = torch.from_numpy(np.stack(pred_masks) if pred_masks else np.zeros((0, h, w), dtype=bool))
        scores = torch.from_numpy(rng.uniform(0.05, 1, len(labels))).float()
        rles = [mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in pred_masks]
        xywh = np.array([mask_utils.toBbox(r) for r in rles], dtype=np.float32).reshape(-1, 4)
        boxes = torch.from_numpy(xywh)
        boxes[:, 2:] += boxes[:, :2]
        dets.append(Detections(boxes, scores, torch.tensor(labels, dtype=torch.int64), masks.to(torch.uint8)))
        metas.append(ImageMeta(i + 1, f"{i}.png", ori_size=(h, w), img_size=(h, w)))
        for m, s, lab in zip(pred_masks, scores.tolist(), labels):
            ref.append({"image_id": i + 1, "category_id": lab + 1, "score": s,
                        "segmentation": mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))})
    cats = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return dets, metas, ref


def pycocotools_stats(ann_file: Path, results: list[dict[str, Any]]) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        ev = COCOeval(gt, gt.loadRes(copy.deepcopy(results)), "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats)


@pytest.mark.parametrize("backend", ["hotcoco", "faster_coco_eval", "pycocotools"])
@pytest.mark.parametrize("seed", [0, 1])
def test_segm_on_random_bitmaps_equals_pycocotools(tmp_path: Path, backend: str, seed: int) -> None:
    ann_file = tmp_path / "gt.json"
    dets, metas, ref = write_dataset(ann_file, seed)
    assert any(a["iscrowd"] for a in json.loads(ann_file.read_text())["annotations"])  # crowd regions covered
    evaluator = CocoEvaluator(str(ann_file), iou_types=("bbox", "segm"), backend=backend)
    evaluator.process(dets, metas)
    result = evaluator.compute()
    ours = np.array([result.metrics[f"segm_{n}"] for n in COCO_STAT_NAMES])
    np.testing.assert_allclose(ours, pycocotools_stats(ann_file, ref), atol=1e-6, rtol=0)
    assert 0.05 < result.metrics["segm_mAP"] < 0.95


def test_segm_needs_masks_at_the_original_size(tmp_path: Path) -> None:
    ann_file = tmp_path / "gt.json"
    dets, metas, _ = write_dataset(ann_file, 0)
    evaluator = CocoEvaluator(str(ann_file), iou_types=("segm",))
    i = next(k for k, d in enumerate(dets) if len(d))
    with pytest.raises(ValueError, match="needs Detections.masks"):
        evaluator.process([Detections(dets[i].boxes, dets[i].scores, dets[i].labels)], [metas[i]])
    small = Detections(dets[i].boxes, dets[i].scores, dets[i].labels, dets[i].masks[:, 1:])
    with pytest.raises(ValueError, match="expected the original image size"):
        evaluator.process([small], [metas[i]])

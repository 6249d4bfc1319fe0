"""VOC mAP (area and 11-point) against hand-computed values."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lightdet.evaluation import VocEvaluator
from lightdet.evaluation.voc import average_precision, match_detections
from lightdet.structures import Detections, ImageMeta


def _gt_file(tmp_path):
    """Image 1: two cats (one difficult/crowd); image 2: one cat, one dog. Boxes xywh."""
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [20, 20, 10, 10], "iscrowd": 1},
        {"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 20, 20], "iscrowd": 0},
        {"id": 4, "image_id": 2, "category_id": 2, "bbox": [30, 30, 10, 10], "iscrowd": 0},
    ]
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 50, "height": 50} for i in (1, 2)]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}))
    return path


def _det(boxes, scores, labels):
    return Detections(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(scores),
                      torch.tensor(labels, dtype=torch.int64))


def _meta(i):
    return ImageMeta(image_id=i, file_name=f"{i}.jpg", ori_size=(50, 50), img_size=(50, 50))


def test_average_precision_by_hand():
    # tp, fp, tp over 2 positives: recall .5 .5 1, precision 1 .5 .667
    recall, precision = np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])
    assert average_precision(recall, precision, "area") == pytest.approx(0.5 * 1 + 0.5 * 2 / 3)
    # 11 points: t = 0..0.5 -> 1 (6 points), t = 0.6..1 -> 2/3 (5 points)
    assert average_precision(recall, precision, "11points") == pytest.approx((6 + 5 * 2 / 3) / 11)
    assert average_precision(np.array([0.5]), np.array([1.0]), "11points") == pytest.approx(6 / 11)


def test_match_detections_ignore_and_duplicates():
    gt = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])
    dets = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 9], [20, 20, 30, 30], [40, 40, 45, 45]])
    flags = match_detections(dets, gt, torch.tensor([False, True]), 0.5)
    assert flags.tolist() == [1, 0, -1, 0]  # tp, duplicate fp, matched a difficult box, miss


@pytest.mark.parametrize(("mode", "cat_ap"), [("area", 0.5 * 1 + 0.5 * 2 / 3), ("11points", (6 + 5 * 2 / 3) / 11)])
def test_voc_evaluator_by_hand(tmp_path, mode, cat_ap):
    ev = VocEvaluator(str(_gt_file(tmp_path)), ["cat", "dog"], mode=mode, iou_thrs=(0.5, 0.75))
    # cat: image 1 tp (0.9), difficult match (0.8, ignored); image 2 fp (0.7), tp (0.6)
    ev.process([_det([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8], [0, 0])], [_meta(1)])
    ev.process([_det([[40, 0, 50, 10], [0, 0, 20, 17], [30, 30, 40, 40]], [0.7, 0.6, 0.5], [0, 0, 1])], [_meta(2)])
    ev.process([_det([[40, 0, 50, 10]], [0.99], [0])], [_meta(2)])  # a repeated image (DDP padding): ignored
    result = ev.compute()
    # IoU of [0,0,20,17] with [0,0,20,20] is 0.85: a tp at 0.5 and at 0.75; dog a perfect detection
    assert result.per_class["cat"] == pytest.approx(cat_ap) and result.per_class["dog"] == pytest.approx(1.0)
    assert result.metrics["bbox_AP50"] == pytest.approx((cat_ap + 1) / 2)
    assert result.metrics["bbox_mAP"] == pytest.approx((cat_ap + 1) / 2) and result.num_images == 2
    assert "bbox_AP75" in result.metrics and "VOC metrics" in result.render()


def test_voc_evaluator_class_without_gt_is_left_out(tmp_path):
    ev = VocEvaluator(str(_gt_file(tmp_path)), ["cat", "dog"])
    ev.process([_det([[0, 0, 10, 10], [5, 5, 8, 8]], [0.9, 0.5], [0, 1])], [_meta(1)])
    result = ev.compute()
    assert np.isnan(result.per_class["dog"]) and result.metrics["bbox_mAP"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="image_id 7"):
        ev.process([Detections.empty()], [_meta(7)])
    with pytest.raises(ValueError, match=r"labels \[4\] outside 0..1"):
        ev.process([_det([[0, 0, 1, 1]], [0.5], [4])], [_meta(1)])
    ev.reset()
    with pytest.raises(RuntimeError, match="no images were processed"):
        ev.compute()

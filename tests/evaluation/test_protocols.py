"""LVIS and Open Images protocols through the hotcoco backend, on a tiny hand-worked LVIS-format file."""

from __future__ import annotations

import json
import math

import pytest
import torch

from lightdet.evaluation import CocoEvaluator
from lightdet.structures import Detections, ImageMeta

# Three categories of the three LVIS frequencies. Image 1 is verified not to contain "c" (negative), image 2
# is not exhaustively annotated for "b" (its unmatched "b" detections are not false positives).
LVIS = {
    "images": [
        {"id": 1, "file_name": "1.jpg", "width": 100, "height": 100, "neg_category_ids": [3], "not_exhaustive_category_ids": []},
        {"id": 2, "file_name": "2.jpg", "width": 100, "height": 100, "neg_category_ids": [], "not_exhaustive_category_ids": [2]},
    ],
    "categories": [{"id": 1, "name": "a", "frequency": "f"}, {"id": 2, "name": "b", "frequency": "c"}, {"id": 3, "name": "c", "frequency": "r"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 30], "area": 900},
        {"id": 2, "image_id": 2, "category_id": 2, "bbox": [50, 50, 20, 20], "area": 400},
        {"id": 3, "image_id": 2, "category_id": 3, "bbox": [5, 5, 20, 20], "area": 400},
    ],
}  # fmt: skip


def _det(rows: list[tuple[float, float, float, float, float, int]]) -> Detections:
    t = torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)
    return Detections(boxes=t[:, :4], scores=t[:, 4], labels=t[:, 5].long())


META = [ImageMeta(image_id=i, file_name=f"{i}.jpg", ori_size=(100, 100), img_size=(100, 100)) for i in (1, 2)]
DETECTIONS = [
    # image 1: a true "a"; a "c" on an image verified not to hold one: a false positive
    _det([(10, 10, 40, 40, 0.9, 0), (60, 60, 70, 70, 0.8, 2)]),
    # image 2: a true "b", a true "c", and an "a": image 2 is neither positive nor negative for "a": ignored
    _det([(50, 50, 70, 70, 0.7, 1), (5, 5, 25, 25, 0.6, 2), (0, 0, 10, 10, 0.5, 0)]),
]


@pytest.fixture
def lvis_file(tmp_path):
    path = tmp_path / "lvis_val.json"
    path.write_text(json.dumps(LVIS))
    return path


def test_lvis_federated_ap_by_hand(lvis_file):
    evaluator = CocoEvaluator(str(lvis_file), ["a", "b", "c"], protocol="lvis")
    evaluator.process(DETECTIONS, META)
    result = evaluator.compute()
    # "c": scores 0.8 (false positive) then 0.6 (true): precision 1/2 at full recall -> AP 0.5
    assert result.per_class == pytest.approx({"a": 1.0, "b": 1.0, "c": 0.5})
    assert result.metrics["bbox_mAP_r"] == pytest.approx(0.5)
    assert result.metrics["bbox_mAP_c"] == pytest.approx(1.0) and result.metrics["bbox_mAP_f"] == pytest.approx(1.0)
    assert result.metrics["bbox_mAP"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert "LVIS metrics" in result.render() and "rare" in result.render()


def test_coco_protocol_counts_the_ignored_detections(lvis_file):
    """Under COCO's rules the "a" on image 2 is a false positive, below the true "a": AP of "a" stays 1."""
    evaluator = CocoEvaluator(str(lvis_file), ["a", "b", "c"])
    evaluator.process(DETECTIONS, META)
    result = evaluator.compute()
    assert result.per_class["a"] == pytest.approx(1.0) and result.per_class["c"] == pytest.approx(0.5)
    assert result.protocol == "coco" and "COCO metrics" in result.render()


def test_open_images_protocol_of_perfect_detections(lvis_file):
    evaluator = CocoEvaluator(str(lvis_file), ["a", "b", "c"], protocol="oid")
    perfect = [_det([(10, 10, 40, 40, 0.9, 0)]), _det([(50, 50, 70, 70, 0.7, 1), (5, 5, 25, 25, 0.6, 2)])]
    evaluator.process(perfect, META)
    result = evaluator.compute()
    assert list(result.metrics) == ["bbox_mAP"] and result.metrics["bbox_mAP"] == pytest.approx(1.0)
    assert not any(math.isnan(v) for v in result.per_class.values())


def test_other_protocols_need_hotcoco(lvis_file):
    with pytest.raises(ValueError, match="protocol='lvis' is evaluated by the hotcoco backend"):
        CocoEvaluator(str(lvis_file), protocol="lvis", backend="pycocotools")

"""Evaluators take COCO ground truth (a path, a dict or a callable) and never import the data layer."""

from __future__ import annotations

import ast
import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from coco_random import RandomCoco

from lightdet.evaluation import CocoEvaluator, VocEvaluator
from lightdet.evaluation.ground_truth import coco_box_arrays
from lightdet.structures import Detections, ImageMeta

EVALUATION = Path(__file__).resolve().parents[2] / "src" / "lightdet" / "evaluation"


def _stats(evaluator: CocoEvaluator, data: RandomCoco) -> list[float]:
    evaluator.process(data.detections, data.metas)
    return list(evaluator.compute().metrics.values())


def test_coco_dict_and_callable_give_the_file_s_metrics(random_coco: RandomCoco) -> None:
    from_file = _stats(CocoEvaluator(str(random_coco.ann_file)), random_coco)
    gt = copy.deepcopy(random_coco.gt)
    assert _stats(CocoEvaluator(gt), random_coco) == from_file
    assert gt == random_coco.gt  # COCOeval writes into the annotations it evaluates: a copy is evaluated
    calls = []

    def read() -> dict:
        calls.append(1)
        return copy.deepcopy(random_coco.gt)

    evaluator = CocoEvaluator(read, iou_types=("bbox",))
    assert calls == []  # read on first use: the file may be generated after the evaluator is built
    assert _stats(evaluator, random_coco) == from_file and calls == [1]


def test_voc_evaluator_reads_a_coco_dict(random_coco: RandomCoco) -> None:
    from_file = VocEvaluator(str(random_coco.ann_file))
    from_dict = VocEvaluator(random_coco.gt)
    for ev in (from_file, from_dict):
        ev.process(random_coco.detections, random_coco.metas)
    assert from_dict.compute().metrics == from_file.compute().metrics
    assert from_dict.source == f"<COCO dict of {len(random_coco.gt['images'])} images>"


def test_a_file_that_is_not_coco_is_named_with_the_way_out(tmp_path: Path) -> None:
    split = tmp_path / "test.txt"
    split.write_text("000005\n")
    with pytest.raises(ValueError, match=r"test\.txt: not valid JSON.*lightdet\.data\.CocoGroundTruth"):
        _ = VocEvaluator(str(split)).class_names
    (tmp_path / "middle.json").write_text(json.dumps({"classes": ["a"], "images": []}))
    with pytest.raises(ValueError, match=r"middle\.json: not a COCO annotation file \(missing top-level keys "
                                         r"\['categories'\]\).*CocoGroundTruth"):
        _ = CocoEvaluator(str(tmp_path / "middle.json")).class_names
    with pytest.raises(TypeError, match="a COCO json path, a COCO dict or a callable"):
        _ = CocoEvaluator(42).class_names  # type: ignore[arg-type]


def test_box_arrays_clip_drop_and_ignore() -> None:
    coco = {
        "images": [{"id": 1, "width": 20, "height": 10}, {"id": 2, "width": 5, "height": 5}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 4, "bbox": [-2, 1, 30, 4]},  # clipped to the image
            {"id": 2, "image_id": 1, "category_id": 9, "bbox": [0, 0, 3, 3]},  # not configured: dropped
            {"id": 3, "image_id": 1, "category_id": 9, "bbox": [0, 0, 3, 3]},
            {"id": 4, "image_id": 1, "category_id": 2, "bbox": [1, 1, 0, 5]},  # zero width: dropped
            {"id": 5, "image_id": 1, "category_id": 2, "bbox": [1, 1, 2, 2], "iscrowd": 1},
        ],
    }
    arrays = coco_box_arrays(coco, [2, 4], "gt.json")
    boxes, labels, ignore = arrays[1]
    np.testing.assert_array_equal(boxes, [[0, 1, 20, 5], [1, 1, 3, 3]])
    assert labels.tolist() == [1, 0] and ignore.tolist() == [False, True]
    assert [a.shape for a in arrays[2]] == [(0, 4), (0,), (0,)]
    coco["annotations"].append({"id": 6, "image_id": 3, "category_id": 2, "bbox": [0, 0, 1, 1]})
    with pytest.raises(ValueError, match=r"gt\.json: annotation 6 refers to image 3"):
        coco_box_arrays(coco, [2], "gt.json")


def test_voc_evaluator_image_without_boxes_is_known(tmp_path: Path) -> None:
    gt = {"images": [{"id": 5, "file_name": "x.jpg", "width": 8, "height": 8}], "annotations": [],
          "categories": [{"id": 1, "name": "cat"}]}
    ev = VocEvaluator(gt)
    ev.process([Detections(torch.tensor([[0.0, 0, 4, 4]]), torch.tensor([0.9]), torch.tensor([0]))],
               [ImageMeta(image_id=5, file_name="x.jpg", ori_size=(8, 8), img_size=(8, 8))])
    assert np.isnan(ev.compute().per_class["cat"])


def test_evaluation_does_not_import_the_data_layer() -> None:
    """Evaluators take detections and ground truth, not datasets (DESIGN: layering)."""
    for path in sorted(EVALUATION.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n == "lightdet.data" or n.startswith("lightdet.data.") for n in names), (path, names)

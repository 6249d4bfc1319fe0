"""A dataset class written outside lightdet (``user_format.CsvDataset``) works with the tools: check,
evaluation (the COCO evaluator fed from its ``annotation_sources``), conversion to COCO and the wrappers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from format_helpers import CSV_TRAIN, CSV_VAL, write_csv
from hydra.utils import instantiate
from user_format import CsvDataset

from lightdet.data import CocoDataset, CocoGroundTruth, annotation_sources
from lightdet.data.check import check_source
from lightdet.data.converters import dataset_to_coco
from lightdet.data.sources import read_ground_truth
from lightdet.structures import Detections

LOAD = [{"_target_": "lightdet.data.LoadImage"}]


def _node(csv_file: Path, **extra: Any) -> dict[str, Any]:
    return {"_target_": "user_format.CsvDataset", "csv_file": str(csv_file), "img_dir": str(csv_file.parent / "img"),
            "classes": ["cat", "dog"], "pipeline": LOAD, **extra}


def _codes(report):
    return {i.code: i.severity for i in report.issues}


def test_sources_of_the_user_class_and_its_wrappers(tmp_path):
    train = write_csv(tmp_path, CSV_TRAIN)
    val = write_csv(tmp_path, CSV_VAL, "val.csv")
    (src,) = annotation_sources(_node(train))
    assert (src.ann_file, src.img_dir, src.box_format) == (str(train), str(tmp_path / "img"), "xyxy")
    repeat = {"_target_": "lightdet.data.RepeatDataset", "times": 2, "dataset": _node(train)}
    assert [s.ann_file for s in annotation_sources(repeat)] == [str(train)]
    concat = {"_target_": "lightdet.data.ConcatDataset", "datasets": [_node(train), _node(val)]}
    balanced = {"_target_": "lightdet.data.ClassBalancedDataset", "oversample_thr": 0.1, "dataset": concat}
    assert [s.ann_file for s in annotation_sources(balanced)] == [str(train), str(val)]
    with pytest.raises(ValueError, match=r"reads 2 annotation files .*train\.csv.*val\.csv"):
        read_ground_truth(concat)


def test_check_reads_the_user_format(tmp_path):
    (src,) = annotation_sources(_node(write_csv(tmp_path, CSV_VAL, "val.csv")))
    report = check_source(src, split="val")
    assert report.errors == 0 and report.num_images == 2 and report.instances == {"cat": 1, "dog": 1, "bird": 1}
    assert "['bird']" in next(i.message for i in report.issues if i.code == "categories_not_configured")
    rows = ["a.jpg,40,30,2,3,12,11,cat", "b.jpg,30,50,10,20,5,10,dog", "d.jpg,10,10,1,1,5,5,dog"]
    (src,) = annotation_sources(_node(write_csv(tmp_path, rows, "bad.csv")))
    report = check_source(src)
    # x2 < x1 as xyxy, but fine as x, y, w, h; d.jpg was never written
    assert _codes(report)["box_format_suspect"] == "warning" and _codes(report)["missing_image"] == "error"


def test_coco_evaluator_fed_from_the_protocol(tmp_path):
    node = _node(write_csv(tmp_path, CSV_TRAIN))
    dataset = instantiate(node)
    assert isinstance(dataset, CsvDataset) and len(dataset) == 3
    evaluator = instantiate({
        "_target_": "lightdet.evaluation.CocoEvaluator",
        "ann_file": {"_target_": "lightdet.data.CocoGroundTruth", "_recursive_": False, "dataset": node},
        "classes": ["cat", "dog"],
    })
    assert isinstance(evaluator.ann_file, CocoGroundTruth) and evaluator.class_names == ["cat", "dog"]
    assert "train.csv" in evaluator.source  # named once read
    for sample in dataset:  # the ground truth itself as detections
        det = Detections(sample.boxes, sample.labels.new_ones(len(sample.labels)).float(), sample.labels)
        evaluator.process([det], [sample.meta])
    assert evaluator.compute().metrics["bbox_mAP"] == pytest.approx(1.0)


def test_conversion_to_coco_gives_the_same_records(tmp_path):
    node = _node(write_csv(tmp_path, CSV_VAL, "val.csv"))
    data = dataset_to_coco(node, tmp_path / "out" / "val.json")
    assert json.loads((tmp_path / "out" / "val.json").read_text()) == data
    assert [c["name"] for c in data["categories"]] == ["cat", "dog", "bird"]
    ours = instantiate(node)
    theirs = CocoDataset(tmp_path / "out" / "val.json", tmp_path / "img", classes=["cat", "dog"])
    for i in range(len(ours)):
        a, b = ours.get_record(i), theirs.get_record(i)
        assert (a.image_id, a.file_path, a.labels.tolist()) == (b.image_id, b.file_path, b.labels.tolist())
        np.testing.assert_allclose(a.boxes, b.boxes)


def test_a_target_without_the_protocol_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"`_target_: lightdet.data.LoadImage`.*no `annotation_sources`"):
        annotation_sources({"_target_": "lightdet.data.LoadImage"})
    with pytest.raises(ValueError, match=r"'user_format.NoSuchDataset' cannot be imported"):
        annotation_sources({"_target_": "user_format.NoSuchDataset"})

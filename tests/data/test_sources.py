"""The built-in datasets' ``annotation_sources``: what evaluators read equals what the datasets load, the
shapes dataset generates itself, and a JSON file given to the tools is parsed once."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from data_helpers import default_coco
from format_helpers import write_middle, write_voc
from hydra.utils import instantiate

from lightdet.categories import match_categories
from lightdet.data import annotation_sources, dataset_from_file
from lightdet.data.check import check_annotation_file
from lightdet.data.sources import locate, read_ground_truth
from lightdet.evaluation.ground_truth import coco_box_arrays


def _nodes(tmp_path, coco_dir) -> dict[str, dict[str, Any]]:
    root = coco_dir(default_coco())
    middle = write_middle(tmp_path / "m")
    split = write_voc(tmp_path / "VOC2007")
    return {
        "coco": {"_target_": "lightdet.data.CocoDataset", "ann_file": str(root / "ann.json"),
                 "img_dir": str(root / "img"), "classes": ["person", "cat"], "filter_empty": True},
        "middle": {"_target_": "lightdet.data.MiddleDataset", "ann_file": str(middle),
                   "img_dir": str(middle.parent / "img"), "classes": ["dog", "cat", "person"]},
        "voc": {"_target_": "lightdet.data.VocDataset", "ann_file": str(split), "classes": ["cat", "dog"]},
    }


@pytest.mark.parametrize("fmt", ["coco", "middle", "voc"])
def test_ground_truth_as_coco_equals_the_dataset_records(fmt, tmp_path, coco_dir):
    """Evaluators read a dataset's COCO view; its boxes, labels and ignore flags are the dataset's own."""
    node = _nodes(tmp_path, coco_dir)[fmt]
    coco, ann_file = read_ground_truth(node)
    assert ann_file == node["ann_file"]
    _, cat_ids = match_categories(node["classes"], coco["categories"], source=ann_file)
    arrays = coco_box_arrays(coco, cat_ids, ann_file)
    dataset = instantiate(node)
    assert len(dataset) <= len(arrays)  # filter_empty drops images the evaluator still knows
    for i in range(len(dataset)):
        record = dataset.get_record(i)
        boxes, labels, ignore = arrays[record.image_id]
        np.testing.assert_allclose(boxes, record.boxes, atol=1e-5)
        assert labels.tolist() == record.labels.tolist() and ignore.tolist() == record.ignore.tolist()


def test_voc_source_keeps_the_files_values(tmp_path):
    (src,) = annotation_sources({"_target_": "lightdet.data.VocDataset",
                                 "ann_file": str(write_voc(tmp_path / "VOC2007")), "classes": ["dog"]})
    assert src.img_dir == str(tmp_path / "VOC2007" / "JPEGImages") and src.box_format == "xyxy"
    coco = src.read_coco()
    assert [c["name"] for c in coco["categories"]] == ["dog", "bird", "cat"]  # configured, then the rest
    assert coco["annotations"][1]["bbox"] == [24.0, 1.0, 23.0, 19.0] and coco["annotations"][1]["iscrowd"] == 1


def test_shapes_dataset_states_its_generated_files(tmp_path):
    node = {"_target_": "lightdet.data.shapes_dataset", "root": str(tmp_path / "s"), "split": "val",
            "num_train": 2, "num_val": 2, "seed": 0, "pipeline": [{"_target_": "lightdet.data.LoadImage"}]}
    (src,) = annotation_sources(node)  # the old alias of ShapesDataset: configs written before keep working
    assert src.ann_file == str(tmp_path / "s" / "annotations" / "val.json") and len(src.read_coco()["images"]) == 2
    assert locate("lightdet.data.shapes_dataset") is locate("lightdet.data.ShapesDataset")


@pytest.fixture
def json_parses(monkeypatch) -> list[str]:
    """The texts ``json.loads`` was called on, from now on."""
    seen: list[str] = []
    loads = json.loads

    def counting(text, *args, **kwargs):
        seen.append(text)
        return loads(text, *args, **kwargs)

    monkeypatch.setattr(json, "loads", counting)
    return seen


@pytest.mark.parametrize("fmt", ["coco", "middle"])
def test_a_file_given_to_the_tools_is_parsed_once(fmt, tmp_path, coco_dir, json_parses):
    path = coco_dir(default_coco()) / "ann.json" if fmt == "coco" else write_middle(tmp_path / "m")
    dataset = dataset_from_file(path, path.parent / "img")  # the format is detected from the same parse
    assert len(dataset) > 0 and len(json_parses) == 1
    json_parses.clear()
    dataset_from_file(path)  # ... and the image folder guessed
    assert len(json_parses) == 1
    json_parses.clear()
    report = check_annotation_file(path, path.parent / "img")
    assert report.errors == 0 and report.num_images == len(dataset) and len(json_parses) == 1

"""``lightdet.data.check``: one broken fixture per defect, and the shapes dataset passes."""

from __future__ import annotations

import json

import pytest
from data_helpers import default_coco
from format_helpers import middle_data, write_middle, write_voc

from lightdet.data.check import check_annotation_file


def _codes(report):
    return {i.code: i.severity for i in report.issues}


def _check(coco_dir, mutate=None, classes=None, images=True):
    data = default_coco()
    data["annotations"] = [a for a in data["annotations"] if a["id"] != 4]  # drop the known zero-size box
    if mutate:
        mutate(data)
    root = coco_dir(data, images=images)
    return check_annotation_file(root / "ann.json", root / "img", classes=classes)


def test_clean_file_and_shapes_pass(coco_dir, tiny_shapes):
    report = _check(coco_dir)
    assert report.errors == 0 and report.warnings == 0
    assert report.num_images == 3 and report.instances == {"cat": 1, "dog": 1, "person": 1}
    for split in ("train", "val"):
        shapes = check_annotation_file(tiny_shapes / "annotations" / f"{split}.json", tiny_shapes / split,
                                       classes=["circle", "square", "triangle", "star", "hexagon"])
        assert shapes.errors == 0 and shapes.warnings == 0, shapes.issues


def test_missing_and_unreadable_images(coco_dir):
    report = _check(coco_dir, images=False)
    assert _codes(report)["missing_image"] == "error"
    root = coco_dir(default_coco())
    (root / "img" / "a.jpg").write_bytes(b"not an image")
    report = check_annotation_file(root / "ann.json", root / "img")
    issue = next(i for i in report.issues if i.code == "unreadable_image")
    assert issue.severity == "error" and "a.jpg" in issue.examples[0]


def test_image_size_mismatch(coco_dir):
    root = coco_dir()
    data = json.loads((root / "ann.json").read_text())
    data["images"][0]["width"] = 41  # the image file stays 40 wide
    (root / "ann.json").write_text(json.dumps(data))
    report = check_annotation_file(root / "ann.json", root / "img")
    assert _codes(report)["image_size_mismatch"] == "error"


def test_zero_size_box(coco_dir):
    report = _check(coco_dir, lambda d: d["annotations"][0].update(bbox=[2, 3, 0, 8]))
    assert _codes(report)["zero_size_box"] == "warning"


def test_box_outside_image(coco_dir):
    report = _check(coco_dir, lambda d: d["annotations"][0].update(bbox=[-10, 3, 15, 8]))
    assert _codes(report)["box_outside_image"] == "warning"


def test_unknown_category_id(coco_dir):
    report = _check(coco_dir, lambda d: d["annotations"][0].update(category_id=9))
    issue = next(i for i in report.issues if i.code == "unknown_category_id")
    assert issue.severity == "error" and "annotation 1 (image 10): category_id 9" in issue.examples[0]


def test_unknown_image_id(coco_dir):
    report = _check(coco_dir, lambda d: d["annotations"][0].update(image_id=99))
    assert _codes(report)["unknown_image_id"] == "error"


def test_duplicate_image_ids(coco_dir):
    report = _check(coco_dir, lambda d: d["images"][1].update(id=10))
    assert _codes(report)["duplicate_image_id"] == "error"


def test_class_name_and_order_mismatch(coco_dir):
    report = _check(coco_dir, classes=["cat", "dgo"])
    assert _codes(report)["class_not_in_file"] == "error"
    report = _check(coco_dir, classes=["dog", "cat", "person"])
    assert {c: v for c, v in _codes(report).items() if v != "info"} == {"class_order_differs": "warning"}
    report = _check(coco_dir, classes=["dog"])
    assert _codes(report)["categories_not_configured"] == "info" and report.errors == 0


def test_xyxy_written_into_a_coco_file(coco_dir):
    def to_xyxy(data):
        # three of four boxes overflow their image when read as xywh: x1 + x2 > W or y1 + y2 > H
        for a, (x, y, w, h) in zip(data["annotations"], ([22, 12, 10, 8], [20, 5, 15, 20], [5, 20, 20, 25],
                                                          [1, 1, 8, 8])):
            a["bbox"] = [x, y, x + w, y + h]

    report = _check(coco_dir, to_xyxy)
    issue = next(i for i in report.issues if i.code == "box_format_suspect")
    assert issue.severity == "error" and "x, y, w, h" in issue.message


def test_xywh_written_into_a_middle_file(tmp_path):
    data = middle_data()
    data["images"][0]["ann"]["bboxes"] = [[20, 5, 15, 20]]  # x, y, w, h: x2 < x1 as xyxy
    data["images"][0]["ann"]["labels"] = [0]
    report = check_annotation_file(write_middle(tmp_path, data), tmp_path / "img")
    assert _codes(report)["box_format_suspect"] == "warning"


def test_middle_label_out_of_range_is_an_unknown_category(tmp_path):
    data = middle_data()
    data["images"][1]["ann"]["labels"] = [5]
    report = check_annotation_file(write_middle(tmp_path, data), tmp_path / "img")
    assert _codes(report)["unknown_category_id"] == "error"


def test_voc_unknown_class_and_clean_split(tmp_path):
    split = write_voc(tmp_path / "VOC2007")
    report = check_annotation_file(split, classes=["cat", "dog", "bird"])
    assert report.errors == 0 and report.instances == {"cat": 2, "dog": 1, "bird": 1}
    report = check_annotation_file(split, classes=["cat", "dog"])
    assert "['bird']" in next(i.message for i in report.issues if i.code == "categories_not_configured")


def test_unparsable_file_is_one_error(tmp_path):
    (tmp_path / "bad.json").write_text("{")
    report = check_annotation_file(tmp_path / "bad.json")
    assert _codes(report) == {"unreadable_annotations": "error"}
    assert json.loads(json.dumps(report.to_dict()))["errors"] == 1


@pytest.mark.parametrize("classes", ["cat", ["cat"]])
def test_single_bare_class(coco_dir, classes):
    report = _check(coco_dir, classes=classes)
    assert list(report.instances)[0] == "cat" and report.errors == 0

"""Middle format and Pascal VOC datasets, the generic file opener and the converters."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from format_helpers import middle_data, write_middle, write_voc
from PIL import Image

from lightdet.data import CocoDataset, MiddleDataset, VocDataset, dataset_from_file
from lightdet.data.converters import coco_to_middle, images_to_coco, middle_to_coco, voc_to_coco, yolo_to_coco
from lightdet.data.datasets import detect_format, voc_image_ids
from lightdet.data.datasets.files import default_image_folder


def _records(ds):
    return [ds.get_record(i) for i in range(len(ds))]


def test_middle_dataset_reads_boxes_ignore_and_ids(tmp_path):
    ds = MiddleDataset(write_middle(tmp_path), tmp_path / "img")
    assert ds.class_names == ["cat", "dog", "person"] and len(ds) == 2
    a, b = _records(ds)
    assert a.image_id == 3 and b.image_id == 1  # explicit id, else the position
    np.testing.assert_array_equal(a.boxes, [[2, 3, 12, 11], [20, 5, 35, 25], [0, 0, 4, 4]])
    assert a.labels.tolist() == [0, 2, 1] and a.ignore.tolist() == [False, False, True]
    sample = ds[0]
    assert sample.image.shape == (3, 30, 40) and sample.ignore.tolist() == [False, False, True]


def test_middle_class_subset_and_single_bare_class(tmp_path):
    path = write_middle(tmp_path)
    ds = MiddleDataset(path, tmp_path / "img", classes="person")  # not split into characters
    assert ds.class_names == ["person"]
    assert [r.labels.tolist() for r in _records(ds)] == [[0], []]
    (tmp_path / "classes.txt").write_text("dog\ncat\n")
    ds = MiddleDataset(path, tmp_path / "img", classes=tmp_path / "classes.txt")
    assert ds.class_names == ["dog", "cat"] and _records(ds)[0].labels.tolist() == [1, 0]
    with pytest.raises(ValueError, match="'persn'.*did you mean 'person'"):
        MiddleDataset(path, tmp_path / "img", classes=["persn"])


def test_middle_bare_list_uses_configured_classes(tmp_path):
    path = write_middle(tmp_path, middle_data()["images"])
    with pytest.raises(ValueError, match="bare list of records has no class names"):
        MiddleDataset(path, tmp_path / "img")
    ds = MiddleDataset(path, tmp_path / "img", classes=["a", "b", "c"])
    assert ds.class_names == ["a", "b", "c"] and _records(ds)[1].labels.tolist() == [1]


@pytest.mark.parametrize(
    ("ann", "message"),
    [
        ({"bboxes": [[1, 2, 3]], "labels": [0]}, r"record 0 \(a.jpg\): `ann.bboxes` has shape \[1, 3\]"),
        ({"bboxes": [[1, 2, 3, 4]], "labels": [0, 1]}, r"1 `ann.bboxes` but 2 `ann.labels`"),
        ({"bboxes": [[1, 2, 3, 4]], "labels": [7]}, r"`ann.labels` has 7, expected a class index in 0..2"),
    ],
)
def test_middle_errors_name_file_record_and_key(tmp_path, ann, message):
    data = {"classes": ["x", "y", "z"], "images": [{"filename": "a.jpg", "width": 10, "height": 10, "ann": ann}]}
    with pytest.raises(ValueError, match=message):
        MiddleDataset(write_middle(tmp_path, data), tmp_path / "img")


def test_middle_pickle_is_not_read(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "ann.pkl.json").write_bytes(b"\x80\x04\x95")
    with pytest.raises(ValueError, match="not valid JSON.*pickle is not read"):
        MiddleDataset(tmp_path / "ann.pkl.json", tmp_path / "img")


def test_voc_dataset_parses_xml_difficult_and_ids(tmp_path):
    split = write_voc(tmp_path / "VOC2007")
    ds = VocDataset(split, classes=["cat", "dog"])
    assert ds.class_names == ["cat", "dog"] and len(ds) == 3
    first, second, third = _records(ds)
    assert [r.image_id for r in (first, second, third)] == [5, 7, 9]
    np.testing.assert_array_equal(first.boxes, [[2, 3, 20, 30], [24, 1, 47, 20]])  # xmin/ymin - 1
    assert first.labels.tolist() == [0, 1] and first.ignore.tolist() == [False, True]
    assert second.labels.tolist() == [1, 0] and len(third) == 0  # "bird" dropped
    assert ds[0].image.shape == (3, 32, 48)
    with pytest.raises(ValueError, match=r"classes not configured: \{'bird': 1\}"):
        VocDataset(split, classes=["cat", "dog"], strict_classes=True)
    assert voc_image_ids(["2008_000008", "2009_000001"]) == [2008000008, 2009000001]
    assert voc_image_ids(["a", "b"]) == [1, 2]


def test_voc_missing_box_key_names_the_file(tmp_path):
    split = write_voc(tmp_path, {"x1": (10, 10, [])})
    (tmp_path / "Annotations" / "x1.xml").write_text(
        "<annotation><size><width>10</width><height>10</height></size>"
        "<object><name>cat</name><bndbox><xmin>1</xmin></bndbox></object></annotation>"
    )
    with pytest.raises(ValueError, match=r"x1.xml: an <object> lacks a numeric <bndbox><ymin>"):
        VocDataset(split, classes=["cat"])


def test_round_trip_shapes_coco_middle_coco(tiny_shapes, tmp_path):
    src = tiny_shapes / "annotations" / "train.json"
    coco_to_middle(src, tmp_path / "middle.json")
    back = middle_to_coco(tmp_path / "middle.json", tmp_path / "back.json")
    original = json.loads(src.read_text())
    assert back["images"] == original["images"]
    assert back["categories"] == [{"id": c["id"], "name": c["name"]} for c in original["categories"]]
    keys = ("id", "image_id", "category_id", "bbox", "iscrowd", "segmentation")
    strip = [[a[k] for k in keys] for a in back["annotations"]]
    assert strip == [[a[k] for k in keys] for a in original["annotations"]]
    areas = [a["area"] for a in back["annotations"]]
    np.testing.assert_allclose(areas, [a["area"] for a in original["annotations"]], atol=0.01)
    ds = MiddleDataset(tmp_path / "middle.json", tiny_shapes / "train", with_mask=True)
    ref = CocoDataset(src, tiny_shapes / "train", with_mask=True)
    assert ds[1].masks.shape == ref[1].masks.shape and ds[1].masks.equal(ref[1].masks)


def test_voc_to_coco_gives_the_voc_dataset_boxes(tmp_path):
    split = write_voc(tmp_path / "VOC2007")
    classes = ["cat", "dog", "bird"]
    voc_to_coco(split, tmp_path / "voc.json", classes=classes)
    coco = CocoDataset(tmp_path / "voc.json", tmp_path / "VOC2007" / "JPEGImages", classes=classes)
    voc = VocDataset(split, classes=classes)
    for a, b in zip(_records(coco), _records(voc), strict=True):
        assert (a.image_id, a.width, a.height, a.file_path) == (b.image_id, b.width, b.height, b.file_path)
        np.testing.assert_array_equal(a.boxes, b.boxes)
        assert a.labels.tolist() == b.labels.tolist() and a.ignore.tolist() == b.ignore.tolist()
    with pytest.raises(ValueError, match=r"000007.xml: object class 'bird' is not among the classes"):
        voc_to_coco(split, tmp_path / "x.json", classes=["cat", "dog"])


def test_yolo_and_images_to_coco(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    Image.new("RGB", (40, 20)).save(tmp_path / "images" / "a.png")
    Image.new("RGB", (10, 10)).save(tmp_path / "images" / "b.jpg")
    (tmp_path / "labels" / "a.txt").write_text("1 0.5 0.5 0.5 0.5\n\n0 0.25 0.25 0.5 0.5\n")
    coco = yolo_to_coco(tmp_path / "images", tmp_path / "y.json", classes=["cat", "dog"])
    assert [a["bbox"] for a in coco["annotations"]] == [[10.0, 5.0, 20.0, 10.0], [0.0, 0.0, 20.0, 10.0]]
    assert [a["category_id"] for a in coco["annotations"]] == [2, 1] and len(coco["images"]) == 2
    (tmp_path / "labels" / "b.txt").write_text("5 0.5 0.5 1 1\n")
    with pytest.raises(ValueError, match=r"b.txt:1: expected 'class cx cy w h' with class in 0..1"):
        yolo_to_coco(tmp_path / "images", tmp_path / "y.json", classes=["cat", "dog"])
    listing = images_to_coco(tmp_path / "images", tmp_path / "i.json", classes="dog")
    assert [(i["file_name"], i["width"], i["height"]) for i in listing["images"]] == [("a.png", 40, 20),
                                                                                      ("b.jpg", 10, 10)]
    assert listing["annotations"] == [] and listing["categories"] == [{"id": 1, "name": "dog"}]


def test_dataset_from_file_detects_formats(tmp_path, coco_dir):
    root = coco_dir()
    assert detect_format(root / "ann.json") == "coco"
    assert isinstance(dataset_from_file(root / "ann.json", root / "img"), CocoDataset)
    middle = write_middle(tmp_path / "m")
    assert detect_format(middle) == "middle" and isinstance(dataset_from_file(middle), MiddleDataset)
    split = write_voc(tmp_path / "VOC2007")
    assert isinstance(dataset_from_file(split, classes=["cat", "dog"]), VocDataset)
    with pytest.raises(ValueError, match="cannot tell the annotation format"):
        detect_format(Path("labels.csv"))


def test_default_image_folder_follows_common_layouts(tiny_shapes, tmp_path):
    # shapes / COCO layout: annotations/val.json beside val/
    val = tiny_shapes / "annotations" / "val.json"
    first = json.loads(val.read_text())["images"][0]["file_name"]
    assert default_image_folder(val, first) == tiny_shapes / "val"
    assert dataset_from_file(val).img_dir == tiny_shapes / "val"
    # instances_val2017.json -> val2017/
    (tmp_path / "annotations").mkdir()
    (tmp_path / "val2017").mkdir()
    (tmp_path / "val2017" / "a.jpg").write_bytes(b"")
    ann = tmp_path / "annotations" / "instances_val2017.json"
    assert default_image_folder(ann, "a.jpg") == tmp_path / "val2017"
    # nothing found: the file's own folder (the check then reports the missing images there)
    assert default_image_folder(ann, "b.jpg") == tmp_path / "annotations"

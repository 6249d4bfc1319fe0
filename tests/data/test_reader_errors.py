"""The cases the reader fuzz test (test_fuzz_readers.py) found, pinned: each one names the file and what is wrong
instead of an unnamed TypeError / OverflowError, a crash of pycocotools or an exhausted memory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data_helpers import default_coco
from format_helpers import middle_data, write_middle, write_voc

from lightdet.data import CocoDataset, MiddleDataset, VocDataset
from lightdet.data.converters import yolo_to_coco


def _coco(coco_dir, edit) -> Path:
    """The fixture's files, then ``edit`` applied to its annotation file."""
    root = coco_dir()
    data = default_coco()
    edit(data)
    (root / "ann.json").write_text(json.dumps(data))
    return root


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["images"][1].update(width="abc"),
         r"ann\.json: malformed COCO file: image 11 \(images\[1\]\): `width` must be a positive integer, got 'abc'"),
        (lambda d: d["annotations"][0].update(bbox=[2, 3, "x", 8]),
         r"annotation 1 \(annotations\[0\]\): `bbox` must be 4 numbers, got \"\[2, 3, 'x', 8\]\""),
        (lambda d: d.update(categories={"id": 1}), r"ann\.json: malformed COCO file: `categories` is dict, not a list"),
        (lambda d: d["annotations"][2].update(image_id=2**70), r"`image_id` must be an integer"),
        (lambda d: d["annotations"][0].update(segmentation=7),
         r"annotation 1 \(annotations\[0\]\): `segmentation` must be a list of polygons or an RLE object, got '7'"),
        (lambda d: d["annotations"][0]["bbox"].__setitem__(1, float("nan")),
         r"ann\.json: annotation 1 \(image 10\) has a bbox with NaN or infinite numbers \[2\.0, nan, 10\.0, 8\.0\]; "
         r"1 annotation\(s\) are affected \(`lightdet-data check .*ann\.json` lists them\)"),
    ],
)
def test_coco_values_of_the_wrong_type_are_named(coco_dir, edit, message: str) -> None:
    root = _coco(coco_dir, edit)
    with pytest.raises(ValueError, match=message):
        CocoDataset(root / "ann.json", root / "img")


@pytest.mark.parametrize(
    ("segmentation", "message"),
    [  # pycocotools aborts the process on the corrupt string and allocates the far-off polygon's extent
        ({"size": [30, 40], "counts": "0a1b"}, r"its RLE `counts` must be a compressed string or run lengths"),
        ({"size": [30, 40], "counts": [5, -3]}, r"its RLE `counts` must be"),
        ({"size": [40, 30], "counts": [1200]}, r"its RLE `size` must be \[height, width\] = \[30, 40\], got '\[40, 30\]'"),
        ([[0, 0, 1e300, 0, 5, 5]], r"a polygon point is NaN, infinite or more than an image size outside the 40x30 "
                                   r"image"),
        ([[0, 0, 10, "y", 5, 5]], r"its polygons must hold numbers"),
    ],
)
def test_segmentations_pycocotools_cannot_take_are_named(coco_dir, segmentation, message: str) -> None:
    root = _coco(coco_dir, lambda d: d["annotations"][0].update(segmentation=segmentation))
    with pytest.raises(ValueError, match=r"ann\.json: annotation 1 \(image 10\): " + message):
        CocoDataset(root / "ann.json", root / "img", with_mask=True)


def test_middle_values_are_named(tmp_path: Path) -> None:
    data = middle_data()
    data["images"][0]["ann"]["labels_ignore"] = 1e300
    path = write_middle(tmp_path, data)
    with pytest.raises(ValueError, match=r"middle\.json: record 0 \(a\.jpg\): `ann\.labels_ignore` must be a list of "
                       r"numbers, got 1e\+300"):
        MiddleDataset(path, tmp_path / "img")
    data = middle_data()
    data["images"][1]["width"] = "wide"
    data["classes"] = ["cat", "dog", "cat"]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"middle\.json: `classes`: classes \['cat', 'dog', 'cat'\] lists 'cat' "
                       r"more than once \(positions 1 and 3\)"):
        MiddleDataset(path, tmp_path / "img")
    data["classes"] = ["cat", "dog", "person"]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"middle\.json: record 1 \(b\.jpg\): `width` must be a positive integer"):
        MiddleDataset(path, tmp_path / "img")
    data = middle_data()
    data["images"][0]["ann"]["bboxes"][1][2] = float("inf")
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"middle\.json: image 3 \(a\.jpg\) has 1 box\(es\) with NaN or infinite"):
        MiddleDataset(path, tmp_path / "img")


def test_voc_values_are_named(tmp_path: Path) -> None:
    split = write_voc(tmp_path / "VOC2007")
    split.write_bytes(b"000005\n0000\x0007\n")
    with pytest.raises(ValueError, match=r"trainval\.txt: '0000\\x0007' is not an image name"):
        VocDataset(split)
    split.write_text("000005\n000007\n")
    xml = tmp_path / "VOC2007" / "Annotations" / "000007.xml"
    xml.write_text(xml.read_text().replace("<width>40</width>", "<width>4O</width>"))
    with pytest.raises(ValueError, match=r"000007\.xml: <size/width> must be an integer, got '4O'"):
        VocDataset(split)
    xml.write_text(xml.read_text().replace("<width>4O</width>", "<width>40</width>").replace(
        "<xmin>10</xmin>", "<xmin>nan</xmin>"))
    with pytest.raises(ValueError, match=r"trainval\.txt: image 000007 has 1 box\(es\) with NaN or infinite numbers "
                       r"in 000007\.xml"):
        VocDataset(split, classes=["cat", "dog", "bird"])


def test_yolo_values_are_named(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(tmp_path / "images" / "a.jpg")
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 nan 0.2 0.3\n")
    with pytest.raises(ValueError, match=r"a\.txt:1: a box with NaN or infinite numbers: '0 0\.5 nan 0\.2 0\.3'"):
        yolo_to_coco(tmp_path / "images", tmp_path / "out.json", classes=["cat"])
    (tmp_path / "labels" / "a.txt").write_bytes(b"0 0.5 \xff 0.2 0.3\n")
    with pytest.raises(ValueError, match=r"a\.txt: cannot read the YOLO label file"):
        yolo_to_coco(tmp_path / "images", tmp_path / "out.json", classes=["cat"])

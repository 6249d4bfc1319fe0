from __future__ import annotations

import copy
import json
import logging

import numpy as np
import pytest
import torch
from data_helpers import CATEGORIES, default_coco

from lightdet.data import CocoDataset, LoadImage, match_categories
from lightdet.structures import DetSample


def test_all_categories_in_id_order_and_records(coco_dir):
    ds = CocoDataset(coco_dir() / "ann.json", coco_dir() / "img")
    assert ds.class_names == ["cat", "dog", "person"]
    assert ds.cat_ids == [1, 2, 5] and ds.num_classes == 3 and len(ds) == 3
    rec = ds.get_record(0)
    assert (rec.image_id, rec.width, rec.height) == (10, 40, 30)
    np.testing.assert_allclose(rec.boxes, [[2, 3, 12, 11], [20, 5, 35, 25]])
    assert rec.boxes.dtype == np.float32 and rec.labels.tolist() == [0, 2]
    assert rec.segmentations is None
    np.testing.assert_allclose(ds.aspect_ratios(), [40 / 30, 30 / 50, 1.0])


def test_boxes_clipped_to_image(coco_dir):
    data = default_coco()
    data["annotations"][1]["bbox"] = [30, 20, 25, 25]  # past the 40x30 image
    root = coco_dir(data)
    record = CocoDataset(root / "ann.json", root / "img").get_record(0)
    np.testing.assert_allclose(record.boxes[1], [30, 20, 40, 30])


def test_crowd_ignore_zero_size_skip_reported_once(coco_dir, caplog):
    root = coco_dir()
    with caplog.at_level(logging.INFO, logger="lightdet.data.datasets.coco"):
        ds = CocoDataset(root / "ann.json", root / "img")
    rec = ds.get_record(1)  # dog box, the zero-width person box dropped, the crowd cat box ignored
    assert rec.labels.tolist() == [1, 0] and rec.ignore.tolist() == [False, True]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert "ann.json" in messages[0]
    assert "1 zero-size boxes skipped" in messages[0] and "1 crowd boxes marked ignore" in messages[0]
    assert "1 images without boxes kept" in messages[0]


def test_filter_empty_drops_images_without_positive_boxes(coco_dir):
    data = default_coco()
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] != 10]
    root = coco_dir(data)
    ds = CocoDataset(root / "ann.json", root / "img", filter_empty=True)
    assert [ds.get_record(i).image_id for i in range(len(ds))] == [11]


def test_class_subset_follows_configured_order_and_drops_others(coco_dir, caplog):
    root = coco_dir()
    with caplog.at_level(logging.INFO):
        ds = CocoDataset(root / "ann.json", root / "img", classes=["person", "cat"])
    assert ds.cat_ids == [5, 1] and ds.num_classes == 2
    assert ds.get_record(0).labels.tolist() == [1, 0]
    assert ds.get_record(1).labels.tolist() == [1]  # only the crowd cat; dog dropped
    assert "1 annotations of other classes dropped" in caplog.text


def test_bare_string_class_is_one_class(coco_dir):
    root = coco_dir()
    ds = CocoDataset(root / "ann.json", root / "img", classes="person")
    assert ds.class_names == ["person"] and ds.num_classes == 1


def test_classes_txt(coco_dir, tmp_path):
    root = coco_dir()
    (tmp_path / "classes.txt").write_text("# my classes\ndog\n\ncat  # comment\n")
    ds = CocoDataset(root / "ann.json", root / "img", classes=tmp_path / "classes.txt")
    assert ds.class_names == ["dog", "cat"] and ds.cat_ids == [2, 1]


def test_check1_num_classes_mismatch(coco_dir):
    root = coco_dir()
    with pytest.raises(ValueError, match=r"ann\.json: num_classes=80 but 3 classes"):
        CocoDataset(root / "ann.json", root / "img", num_classes=80)


def test_check1_strict_count_mismatch(coco_dir):
    root = coco_dir()
    with pytest.raises(ValueError, match=r"ann\.json has 3 categories .* but 2 classes"):
        CocoDataset(root / "ann.json", root / "img", classes=["cat", "dog"], strict_classes=True)


def test_check2_unknown_name_suggests_close_match(coco_dir):
    root = coco_dir()
    with pytest.raises(ValueError, match=r"'persn' \(did you mean 'person'\?\).*\['cat', 'dog', 'person'\]"):
        CocoDataset(root / "ann.json", root / "img", classes=["cat", "persn"])


def test_check2_strict_order(coco_dir):
    root = coco_dir()
    with pytest.raises(ValueError, match=r"position 0 is 'dog' in the config but 'cat' in the file"):
        CocoDataset(root / "ann.json", root / "img", classes=["dog", "cat", "person"], strict_classes=True)
    ds = CocoDataset(root / "ann.json", root / "img", classes=["cat", "dog", "person"], strict_classes=True)
    assert ds.num_classes == 3


def test_check3_annotation_with_unknown_category(coco_dir):
    data = default_coco()
    data["annotations"][2]["category_id"] = 7
    root = coco_dir(data)
    with pytest.raises(ValueError, match=r"ann\.json: annotation 3 \(image 11\) has category_id 7"):
        CocoDataset(root / "ann.json", root / "img")


def test_annotation_with_unknown_image(coco_dir):
    data = default_coco()
    data["annotations"][0]["image_id"] = 99
    root = coco_dir(data)
    with pytest.raises(ValueError, match=r"annotation 1 refers to image 99"):
        CocoDataset(root / "ann.json", root / "img")


def test_malformed_files(coco_dir):
    data = default_coco()
    del data["annotations"][1]["bbox"]
    root = coco_dir(data)
    with pytest.raises(ValueError, match=r"ann\.json: malformed COCO file: annotation 2 \(annotations\[1\]\) lacks `bbox`"):
        CocoDataset(root / "ann.json", root / "img")
    (root / "ann.json").write_text("{")
    with pytest.raises(ValueError, match=r"ann\.json: not valid JSON"):
        CocoDataset(root / "ann.json", root / "img")
    (root / "ann.json").write_text('{"images": []}')
    with pytest.raises(ValueError, match=r"missing top-level keys \['categories'\]"):
        CocoDataset(root / "ann.json", root / "img")


def test_missing_paths_name_the_path_and_the_config_key(tmp_path, coco_dir):
    missing = r"annotation file '.*nowhere\.json' does not exist.*dataset\.data_root"
    with pytest.raises(FileNotFoundError, match=missing):
        CocoDataset(tmp_path / "nowhere.json", tmp_path)
    root = coco_dir()
    with pytest.raises(FileNotFoundError, match=r"image folder '.*missing_dir' does not exist"):
        CocoDataset(root / "ann.json", root / "missing_dir")


def test_getitem_runs_the_pipeline(coco_dir):
    root = coco_dir()
    ds = CocoDataset(root / "ann.json", root / "img")
    sample = ds[1]
    assert isinstance(sample, DetSample)
    assert sample.image.shape == (3, 50, 30) and sample.image.dtype == torch.uint8
    assert sample.ignore.tolist() == [False, True] and sample.meta.image_id == 11
    assert sample.masks is None


def test_masks_from_polygons_and_rle(coco_dir):
    root = coco_dir()
    ds = CocoDataset(root / "ann.json", root / "img", with_mask=True)
    sample = ds[1]
    assert sample.masks is not None and sample.masks.dtype == torch.uint8
    assert sample.masks.shape == (2, 50, 30)
    # polygon of the box [0, 10, 25, 40] and the crowd RLE square [1, 9)^2
    assert sample.masks[0, 10:40, 0:25].all() and sample.masks[0].sum() == 25 * 30
    assert sample.masks[1, 1:9, 1:9].all() and sample.masks[1].sum() == 64
    assert ds[2].masks.shape == (0, 20, 20)


def test_missing_image_and_size_mismatch(coco_dir):
    data = default_coco()
    root = coco_dir(data)
    (root / "img" / "c.jpg").unlink()
    ds = CocoDataset(root / "ann.json", root / "img")
    with pytest.raises(FileNotFoundError, match=r"image 12: file '.*c\.jpg' not found"):
        ds[2]
    wrong = copy.deepcopy(data)
    wrong["images"][0]["width"] = 41
    (root / "ann.json").write_text(json.dumps(wrong))
    with pytest.raises(ValueError, match=r"decodes to \(H, W\) \(30, 40\) but the annotation file says"):
        CocoDataset(root / "ann.json", root / "img")[0]


def test_pipeline_must_produce_a_sample(coco_dir):
    root = coco_dir()
    ds = CocoDataset(root / "ann.json", root / "img", pipeline=[lambda record: record])
    with pytest.raises(TypeError, match=r"returned ImageRecord, not a DetSample.*LoadImage"):
        ds[0]
    assert isinstance(CocoDataset(root / "ann.json", root / "img", pipeline=LoadImage())[0], DetSample)


def test_match_categories_edge_cases():
    with pytest.raises(ValueError, match=r"f\.json: the file has no categories"):
        match_categories(None, [], source="f.json")
    dup = [{"id": 1, "name": "cat"}, {"id": 2, "name": "cat"}]
    with pytest.raises(ValueError, match=r"\['cat'\] appear under several ids"):
        match_categories(["cat"], dup, source="f.json")
    with pytest.raises(ValueError, match=r"lists 'cat' more than once \(positions 1 and 2\)"):
        match_categories(["cat", "cat"], CATEGORIES, source="f.json")
    assert match_categories(("person",), CATEGORIES, source="f.json", num_classes=1) == (["person"], [5])


def test_masks_need_segmentations(coco_dir):
    data = default_coco()
    del data["annotations"][2]["segmentation"]
    root = coco_dir(data)
    assert CocoDataset(root / "ann.json", root / "img").get_record(1).segmentations is None
    with pytest.raises(ValueError, match=r"annotation 3 \(image 11\) has no `segmentation`"):
        CocoDataset(root / "ann.json", root / "img", with_mask=True)

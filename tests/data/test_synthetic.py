from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import multiprocessing as mp
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from lightdet.data import SHAPE_CLASSES, CocoDataset, ensure_shapes, make_shapes, shapes_dataset

SMALL = {"num_train": 5, "num_val": 3}


def _digests(root: Path) -> dict[str, str]:
    files = (p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_same_arguments_same_bytes(tmp_path):
    a = _digests(make_shapes(tmp_path / "a", **SMALL, seed=1))
    b = _digests(make_shapes(tmp_path / "b", **SMALL, seed=1))
    c = _digests(make_shapes(tmp_path / "c", **SMALL, seed=2))
    assert a == b and len(a) == 5 + 3 + 3
    assert a["train/000001.jpg"] != c["train/000001.jpg"]


def test_an_image_does_not_depend_on_the_split_sizes(tmp_path):
    a = _digests(make_shapes(tmp_path / "a", num_train=2, num_val=1))
    b = _digests(make_shapes(tmp_path / "b", num_train=4, num_val=1))
    assert a["train/000002.jpg"] == b["train/000002.jpg"] and a["val/000001.jpg"] == b["val/000001.jpg"]


def _load(path: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


@pytest.mark.parametrize("split", ["train", "val"])
def test_valid_coco(tiny_shapes, split):
    coco = _load(tiny_shapes / "annotations" / f"{split}.json")
    cats = coco.loadCats(coco.getCatIds())
    assert [c["id"] for c in cats] == [1, 2, 3, 4, 5] and [c["name"] for c in cats] == list(SHAPE_CLASSES)
    assert len(coco.getImgIds()) == {"train": 12, "val": 6}[split]
    for img in coco.loadImgs(coco.getImgIds()):
        with Image.open(tiny_shapes / split / img["file_name"]) as pil:
            assert pil.size == (img["width"], img["height"]) and pil.mode == "RGB"
        assert 112 <= img["width"] <= 144 and 112 <= img["height"] <= 144
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))
        assert 1 <= len(anns) <= 6
        for ann in anns:
            x, y, w, h = ann["bbox"]
            assert ann["iscrowd"] == 0 and w > 0 and h > 0
            assert x >= 0 and y >= 0 and x + w <= img["width"] and y + h <= img["height"]
            poly = np.array(ann["segmentation"][0]).reshape(-1, 2)
            # the box is tight around the polygon
            np.testing.assert_allclose([*poly.min(0), *(poly.max(0) - poly.min(0))], ann["bbox"], atol=0.011)
            assert 0 < ann["area"] <= w * h
            mask = coco.annToMask(ann)
            assert abs(int(mask.sum()) - ann["area"]) <= 0.2 * ann["area"] + 8


def test_objects_contrast_with_their_background(tiny_shapes):
    coco = _load(tiny_shapes / "annotations" / "train.json")
    for img in coco.loadImgs(coco.getImgIds())[:4]:
        pixels = np.asarray(Image.open(tiny_shapes / "train" / img["file_name"]), dtype=np.float64)
        background = np.ones(pixels.shape[:2], dtype=bool)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=img["id"])):
            background &= coco.annToMask(ann) == 0
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=img["id"])):
            inside = coco.annToMask(ann).astype(bool)
            if inside.sum() < 50:
                continue
            x, y, w, h = (int(v) for v in ann["bbox"])
            around = background[max(y - 4, 0) : y + h + 4, max(x - 4, 0) : x + w + 4]
            ring = pixels[max(y - 4, 0) : y + h + 4, max(x - 4, 0) : x + w + 4][around]
            diff = np.abs(pixels[inside].mean(0) - ring.mean(0)).max()
            assert diff > 20, (img["file_name"], ann["id"])


def test_invalid_parameters(tmp_path):
    with pytest.raises(ValueError, match="min_object_size <= max_object_size"):
        make_shapes(tmp_path, num_train=1, num_val=1, max_object_size=500)


def test_ensure_generates_once_and_warns_on_other_parameters(tmp_path, caplog):
    root = tmp_path / "data" / "shapes"
    assert ensure_shapes(root, **SMALL) == root
    before = (root / "annotations" / "train.json").stat().st_mtime_ns
    with caplog.at_level(logging.WARNING):
        ensure_shapes(root, num_train=7, num_val=3)
    assert (root / "annotations" / "train.json").stat().st_mtime_ns == before
    assert "'num_train': (5, 7)" in caplog.text
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["shapes"]  # no temporary folder left


def test_ensure_refuses_a_foreign_folder(tmp_path):
    (tmp_path / "shapes").mkdir()
    ensure_shapes(tmp_path / "shapes", **SMALL)  # an empty folder is filled
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a complete shapes dataset"):
        ensure_shapes(tmp_path / "other", **SMALL)


def _ensure_in_process(root: str) -> str:
    return str(ensure_shapes(root, num_train=20, num_val=5))


def test_ensure_is_safe_with_concurrent_processes(tmp_path):
    root = tmp_path / "shapes"
    with mp.get_context("fork").Pool(3) as pool:
        results = pool.map(_ensure_in_process, [str(root)] * 3)
    assert results == [str(root)] * 3
    assert [p.name for p in tmp_path.iterdir()] == ["shapes"]
    data = json.loads((root / "annotations" / "train.json").read_text())
    assert len(data["images"]) == 20 and len(list((root / "train").iterdir())) == 20


def test_factory_returns_the_split(tmp_path):
    train = shapes_dataset(tmp_path / "s", "train", **SMALL, classes=["star", "circle"])
    val = shapes_dataset(tmp_path / "s", "val", **SMALL)
    assert isinstance(train, CocoDataset) and len(train) == 5 and len(val) == 3
    assert train.class_names == ["star", "circle"] and train.cat_ids == [4, 1]
    assert val.class_names == list(SHAPE_CLASSES)
    with pytest.raises(ValueError, match="split must be one of"):
        shapes_dataset(tmp_path / "s", "test", **SMALL)


def test_ensure_when_another_process_finishes_first(tmp_path, monkeypatch):
    import lightdet.data.synthetic as synthetic

    root = tmp_path / "shapes"
    real = synthetic.make_shapes

    def racing(out_dir, **params):
        real(root, **params)  # the other process wins the race while this one is still writing
        return real(out_dir, **params)

    monkeypatch.setattr(synthetic, "make_shapes", racing)
    assert ensure_shapes(root, **SMALL) == root
    assert [p.name for p in tmp_path.iterdir()] == ["shapes"]

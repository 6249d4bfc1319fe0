"""``lightdet-data browse`` shows the strong augmentations, multi-image steps included, repeatably."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from hydra.utils import instantiate
from PIL import Image

import lightdet
from lightdet.cli.data import main
from lightdet.data import CocoDataset, LoadImage, MixUp, Mosaic, MultiImageMixDataset, RandomFlip
from lightdet.data.visualize import browse


def _sizes(paths) -> set[tuple[int, int]]:
    return {Image.open(p).size for p in paths}


def _mosaic_dataset(tiny_shapes) -> CocoDataset:
    pipeline = [LoadImage(), Mosaic(img_scale=(64, 64), max_cached_images=10), RandomFlip(0.5)]
    return CocoDataset(tiny_shapes / "annotations" / "train.json", tiny_shapes / "train", pipeline=pipeline)


def test_browse_shows_cached_mosaics_from_the_first_image(tiny_shapes, tmp_path):
    first = browse(_mosaic_dataset(tiny_shapes), tmp_path / "a", num=3, seed=0)
    assert _sizes(first) == {(128, 128)}  # the cache was filled before the first drawn image
    again = browse(_mosaic_dataset(tiny_shapes), tmp_path / "b", num=3, seed=0)
    assert [np.asarray(Image.open(p)).tobytes() for p in first] == [
        np.asarray(Image.open(p)).tobytes() for p in again
    ]


def test_browse_a_multi_image_dataset(tiny_shapes, tmp_path):
    inner = CocoDataset(tiny_shapes / "annotations" / "train.json", tiny_shapes / "train")
    ds = MultiImageMixDataset(inner, [Mosaic(img_scale=(48, 48)), MixUp(img_scale=(96, 96))])
    assert _sizes(browse(ds, tmp_path / "m", num=2, seed=1)) == {(96, 96)}


def test_browse_cli_with_the_strong_shapes_pipelines(tiny_shapes, tmp_path):
    base = [f"dataset.data_root={tiny_shapes}", "dataset.num_train=12", "dataset.num_val=6", "dataset.seed=3"]
    strong = [*base, "dataset/pipeline=shapes_rtmdet_strong"]
    assert main(["browse", *strong, "--num", "2", "--out", str(tmp_path / "strong")]) == 0
    late = [*strong, "dataset.datamodule.train.pipeline=${dataset.pipeline.train_late}"]
    assert main(["browse", *late, "--num", "2", "--out", str(tmp_path / "late")]) == 0
    assert (
        _sizes((tmp_path / "strong").glob("*.png"))
        == _sizes((tmp_path / "late").glob("*.png"))
        == {(144, 144)}
    )
    detr = [*base, "dataset/pipeline=shapes_rtdetr_strong", "--num", "2", "--out", str(tmp_path / "detr")]
    assert main(["browse", *detr]) == 0 and _sizes((tmp_path / "detr").glob("*.png")) == {(144, 144)}


def test_the_tutorial_yolox_dataset_feeds_mosaic_and_mixup_from_the_dataset(tiny_shapes, tmp_path):
    doc = (Path(__file__).resolve().parents[2] / "docs" / "tutorials" / "3_pipelines.md").read_text()
    (block,) = [
        b for b in re.findall(r"```yaml\n(.*?)```", doc, re.S) if "my_configs/dataset/shapes_yolox" in b
    ]
    (tmp_path / "my_configs" / "dataset").mkdir(parents=True)
    (tmp_path / "my_configs" / "dataset" / "shapes_yolox.yaml").write_text(block)
    overrides = [
        "dataset=shapes_yolox",
        f"dataset.data_root={tiny_shapes}",
        "dataset.num_train=12",
        "dataset.seed=3",
    ]
    cfg = lightdet.compose(
        overrides=[*overrides, "dataset.num_val=6"], config_dir=str(tmp_path / "my_configs")
    )
    train = instantiate(cfg.dataset.datamodule.train, _convert_="all")
    assert isinstance(train, MultiImageMixDataset) and len(train) == 12
    # Mosaic of 144 px tiles, then RandomAffine's border of -72 gives 144x144 back
    assert _sizes(browse(train, tmp_path / "yolox", num=2, seed=0)) == {(144, 144)}

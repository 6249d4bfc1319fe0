"""The dataset yaml files, composed by hand (OmegaConf merge) and instantiated with Hydra."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from lightdet.config import register_resolvers
from lightdet.data import CocoDataset, DetDataModule, LoadImage, RandomFlip, Resize, ShapesDataset

CONF = Path(__file__).resolve().parents[2] / "conf" / "dataset"


def compose(name: str, data_dir: Path, pipeline: str | None = None, **dataset: Any) -> DictConfig:
    """What Hydra composes for ``dataset=NAME [dataset/pipeline=PIPELINE]`` with ``paths.data_dir``."""
    register_resolvers()
    node = OmegaConf.load(CONF / f"{name}.yaml")
    defaults = node.pop("defaults")
    assert defaults[-1] == "_self_"
    pipeline = pipeline or defaults[0]["pipeline"]
    return OmegaConf.merge(
        {"paths": {"data_dir": str(data_dir)}},
        {"dataset": {"pipeline": OmegaConf.load(CONF / "pipeline" / f"{pipeline}.yaml")}},
        {"dataset": node},
        {"dataset": dataset},
    )


@pytest.mark.parametrize("name", ["shapes", "coco"])
def test_common_keys(name, tmp_path):
    cfg = compose(name, tmp_path).dataset
    keys = ["name", "data_root", "classes", "num_classes", "batch_size", "num_workers", "datamodule"]
    assert all(key in cfg for key in [*keys, "evaluator"])
    assert cfg.name == name and cfg.data_root == str(tmp_path / name)
    assert cfg.num_classes == len(cfg.classes)
    assert cfg.datamodule._target_ == "lightdet.data.DetDataModule"
    assert cfg.datamodule.batch_size == cfg.batch_size and cfg.datamodule.num_workers == cfg.num_workers
    assert cfg.evaluator._target_ == "lightdet.evaluation.CocoEvaluator"
    assert list(cfg.evaluator.classes) == list(cfg.classes)
    val_json = {"coco": "instances_val2017.json", "shapes": "val.json"}[name]
    assert cfg.evaluator.ann_file == str(tmp_path / name / "annotations" / val_json)


def test_shapes_datamodule_instantiates_and_generates(tmp_path):
    cfg = compose("shapes", tmp_path, num_train=6, num_val=3)
    assert cfg.dataset.num_classes == 5
    dm = instantiate(cfg.dataset.datamodule, num_workers=0)
    assert isinstance(dm, DetDataModule) and isinstance(dm.train, ShapesDataset)
    assert len(dm.train) == 6 and len(dm.val) == 3
    assert [type(t) for t in dm.train.pipeline.transforms] == [LoadImage, RandomFlip]
    assert [type(t) for t in dm.val.pipeline.transforms] == [LoadImage, Resize]  # capped at the trained scale
    assert Path(cfg.dataset.evaluator.ann_file).is_file()
    batch = next(iter(dm.train_dataloader()))
    assert len(batch) == 6 and max(batch.images.shape[-2:]) <= 144


def test_coco_names_in_category_id_order(tmp_path):
    classes = list(compose("coco", tmp_path).dataset.classes)
    assert len(classes) == 80 == len(set(classes))
    assert classes[:3] == ["person", "bicycle", "car"] and classes[-1] == "toothbrush"
    assert classes[classes.index("dining table") - 1] == "bed"


def test_coco_without_data_names_the_missing_path(tmp_path):
    cfg = compose("coco", tmp_path)
    missing = r"instances_train2017\.json' does not exist.*dataset\.data_root"
    with pytest.raises(InstantiationException, match=missing) as info:
        instantiate(cfg.dataset.datamodule)
    assert str(tmp_path / "coco") in str(info.value)


def _fake_coco(root: Path, classes: list[str]) -> None:
    """Two 64x48 images per split with one box each, under the real COCO file names."""
    cats = [{"id": i + 1 + (i >= 11), "name": n} for i, n in enumerate(classes)]  # COCO's ids have gaps
    for split in ("train2017", "val2017"):
        (root / split).mkdir(parents=True)
        images = [{"id": i, "file_name": f"{i:012d}.jpg", "width": 64, "height": 48} for i in (1, 2)]
        for img in images:
            Image.fromarray(np.full((48, 64, 3), 90, dtype=np.uint8)).save(root / split / img["file_name"])
        anns = [{"id": i, "image_id": i, "category_id": 1, "bbox": [4, 4, 20, 10], "area": 200, "iscrowd": 0}
                for i in (1, 2)]
        (root / "annotations").mkdir(exist_ok=True)
        data = {"images": images, "annotations": anns, "categories": cats}
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("pipeline", "short_sides"), [("coco_1333x800", {800}), ("coco_multiscale", range(640, 801))]
)
def test_coco_pipelines(tmp_path, pipeline, short_sides):
    cfg = compose("coco", tmp_path, pipeline=pipeline)
    _fake_coco(Path(cfg.dataset.data_root), list(cfg.dataset.classes))
    dm = instantiate(cfg.dataset.datamodule, num_workers=0)
    assert isinstance(dm.train, CocoDataset) and dm.train.num_classes == 80
    sample = dm.train[0]
    assert min(sample.meta.img_size) in short_sides and sample.meta.img_size[1] <= 1333
    assert dm.val[0].meta.img_size == (800, 1067)
    resize = dm.train.pipeline.transforms[1]
    assert isinstance(resize, Resize) and resize.keep_ratio
    assert len(resize.scales) == (2 if pipeline == "coco_multiscale" else 1)


@pytest.mark.parametrize("path", sorted((CONF / "pipeline").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_pipeline_file_instantiates(path):
    """Each pipeline file, composed as ``dataset/pipeline=NAME``: its step lists (train, test and the
    optional train_late of the pipeline switch) build, each starting with LoadImage; other keys are the
    file's own settings (scales, cache sizes) that the steps interpolate."""
    from lightdet.composition import compose_config

    node = compose_config("train", [f"dataset/pipeline={path.stem}"]).dataset.pipeline
    lists = {k for k in node if OmegaConf.is_list(node[k]) and OmegaConf.is_dict(node[k]._get_node(0))}
    assert {"train", "test"} <= lists <= {"train", "test", "train_late"}
    for split in sorted(lists):
        steps = instantiate(node[split])
        assert isinstance(steps[0], LoadImage) and all(callable(s) for s in steps)

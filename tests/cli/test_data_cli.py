"""``lightdet-data check / browse / stats / convert`` run in-process through ``main``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from format_helpers import CSV_TRAIN, CSV_VAL, write_csv, write_middle, write_voc  # noqa: E402

from lightdet.cli.data import main  # noqa: E402
from lightdet.data import make_shapes  # noqa: E402

SHAPES = ["dataset.num_train=6", "dataset.num_val=3"]


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory) -> Path:
    data_dir = tmp_path_factory.mktemp("data")
    make_shapes(data_dir / "shapes", num_train=6, num_val=3, seed=1)
    return data_dir


def test_check_config_passes_shapes_and_prints_json(shapes_dir, capsys):
    assert main(["check", f"paths.data_dir={shapes_dir}", *SHAPES, "--json"]) == 0
    reports = json.loads(capsys.readouterr().out)
    assert [r["split"] for r in reports] == ["train", "val"] and reports[0]["num_images"] == 6
    assert reports[0]["errors"] == 0 and set(reports[0]["instances"]) == {"circle", "square", "triangle", "star",
                                                                          "hexagon"}


def test_check_file_exit_codes(shapes_dir, tmp_path, capsys):
    ann = shapes_dir / "shapes" / "annotations" / "val.json"
    assert main(["check", str(ann), "--img-dir", str(shapes_dir / "shapes" / "val")]) == 0
    data = json.loads(ann.read_text())
    data["annotations"][0]["category_id"] = 42
    (tmp_path / "bad.json").write_text(json.dumps(data))
    assert main(["check", str(tmp_path / "bad.json"), "--img-dir", str(shapes_dir / "shapes" / "val")]) == 1
    out = capsys.readouterr().out
    assert "unknown_category_id" in out and "category_id 42" in out
    assert main(["check", str(ann), "--img-dir", str(shapes_dir / "shapes" / "val"), "--classes", "circle",
                 "--strict"]) == 0
    with pytest.raises(SystemExit) as err:
        main(["check", str(tmp_path / "missing.json")])
    assert err.value.code == 2


def test_check_voc0712_config(tmp_path, capsys):
    for year in ("VOC2007", "VOC2012"):
        write_voc(tmp_path / "VOCdevkit" / year)
    write_voc(tmp_path / "VOCdevkit" / "VOC2007", split="test")
    assert main(["check", "dataset=voc0712", f"paths.data_dir={tmp_path}", "--json"]) == 0
    reports = json.loads(capsys.readouterr().out)
    assert [r["split"] for r in reports] == ["train", "train", "val"]


def test_browse_and_stats_write_pngs(shapes_dir, tmp_path, capsys):
    assert main(["browse", f"paths.data_dir={shapes_dir}", *SHAPES, "--out", str(tmp_path / "b"), "--num", "2"]) == 0
    pngs = sorted((tmp_path / "b").glob("*.png"))
    assert len(pngs) == 2 and all(np.asarray(Image.open(p)).std() > 0 for p in pngs)
    assert main(["stats", f"paths.data_dir={shapes_dir}", *SHAPES, "--out", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "anchor coverage:" in out and "IoU >= 0.5" in out
    for name in ("class_counts", "box_sizes", "aspect_ratios"):
        assert np.asarray(Image.open(tmp_path / "s" / f"{name}.png")).std() > 0


def test_convert_subcommands(tmp_path, capsys):
    split = write_voc(tmp_path / "VOC2007")
    assert main(["convert", "voc2coco", str(split), str(tmp_path / "voc.json"), "--classes", "cat", "dog",
                 "bird"]) == 0
    assert len(json.loads((tmp_path / "voc.json").read_text())["annotations"]) == 5
    assert main(["convert", "voc2coco", str(split), str(tmp_path / "x.json"), "--classes", "cat"]) == 2
    assert "object class 'dog' is not among the classes" in capsys.readouterr().err
    middle = write_middle(tmp_path / "m")
    assert main(["convert", "middle2coco", str(middle), str(tmp_path / "m.json")]) == 0
    assert main(["convert", "coco2middle", str(tmp_path / "m.json"), str(tmp_path / "m2.json")]) == 0
    assert json.loads((tmp_path / "m2.json").read_text())["classes"] == ["cat", "dog", "person"]
    assert main(["convert", "images2coco", str(tmp_path / "m" / "img"), str(tmp_path / "i.json")]) == 0
    with pytest.raises(SystemExit):
        main(["convert", "yolo2coco", str(tmp_path / "m" / "img"), str(tmp_path / "y.json")])


def test_convert_help_teaches(capsys):
    with pytest.raises(SystemExit):
        main(["convert", "voc2coco", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "difficult boxes -> iscrowd" in out and "example: lightdet-data convert voc2coco" in out


# A dataset config of the user's own format (tests/data/user_format.py), in a config folder of the user's.
CSV_CONFIG = """
defaults:
  - pipeline: shapes
  - _self_

name: csv_data
data_root: ROOT
classes: [cat, dog]
num_classes: ${lightdet.num_classes:${dataset.classes}}
with_mask: false
batch_size: 2
num_workers: 0

datamodule:
  _target_: lightdet.data.DetDataModule
  batch_size: ${dataset.batch_size}
  num_workers: ${dataset.num_workers}
  train:
    _target_: lightdet.data.RepeatDataset
    times: 2
    dataset:
      _target_: user_format.CsvDataset
      csv_file: ${dataset.data_root}/train.csv
      img_dir: ${dataset.data_root}/img
      classes: ${dataset.classes}
      pipeline: ${dataset.pipeline.train}
  val:
    _target_: user_format.CsvDataset
    csv_file: ${dataset.data_root}/val.csv
    img_dir: ${dataset.data_root}/img
    classes: ${dataset.classes}
    pipeline: ${dataset.pipeline.test}

evaluator:
  _target_: lightdet.evaluation.CocoEvaluator
  ann_file:
    _target_: lightdet.data.CocoGroundTruth
    _recursive_: false
    dataset: ${dataset.datamodule.val}
  classes: ${dataset.classes}
"""


@pytest.fixture
def csv_config(tmp_path) -> list[str]:
    """Overrides choosing the user's CSV dataset from the user's config folder."""
    root = tmp_path / "csv"
    write_csv(root, CSV_TRAIN)
    write_csv(root, CSV_VAL, "val.csv")
    (tmp_path / "my_configs" / "dataset").mkdir(parents=True)
    (tmp_path / "my_configs" / "dataset" / "csv_data.yaml").write_text(CSV_CONFIG.replace("ROOT", str(root)))
    return [f"hydra.searchpath=[file://{tmp_path / 'my_configs'}]", "dataset=csv_data"]


def test_tools_on_a_dataset_class_of_the_user(csv_config, tmp_path, capsys):
    assert main(["check", *csv_config, "--json"]) == 0
    reports = json.loads(capsys.readouterr().out)
    assert [(r["split"], Path(r["source"]).name) for r in reports] == [("train", "train.csv"), ("val", "val.csv")]
    assert reports[1]["instances"] == {"cat": 1, "dog": 1, "bird": 1} and reports[1]["errors"] == 0
    assert main(["browse", *csv_config, "--out", str(tmp_path / "b"), "--num", "2"]) == 0
    assert len(list((tmp_path / "b").glob("*.png"))) == 2
    assert main(["stats", *csv_config, "--out", str(tmp_path / "s")]) == 0
    out = capsys.readouterr().out
    assert "6 images, 6 boxes" in out and "anchor coverage:" in out  # the train split, repeated twice
    assert main(["convert", "dataset2coco", "val", str(tmp_path / "val.json"), *csv_config]) == 0
    data = json.loads((tmp_path / "val.json").read_text())
    assert len(data["images"]) == 2 and [c["name"] for c in data["categories"]] == ["cat", "dog", "bird"]


def test_dataset2coco_names_what_it_cannot_convert(csv_config, tmp_path, capsys):
    assert main(["convert", "dataset2coco", "train", str(tmp_path / "t.json"), *csv_config]) == 0
    assert len(json.loads((tmp_path / "t.json").read_text())["annotations"]) == 3  # through RepeatDataset
    assert main(["convert", "dataset2coco", "train", str(tmp_path / "x.json"), *csv_config,
                 "dataset.datamodule.train.dataset._target_=lightdet.data.LoadImage"]) == 2
    assert "no `annotation_sources` classmethod" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        main(["convert", "dataset2coco", "test", str(tmp_path / "x.json"), *csv_config])
    assert err.value.code == 2

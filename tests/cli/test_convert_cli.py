"""lightdet-convert: a torchvision checkpoint becomes a lightdet checkpoint that lightdet-test runs as is."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torchvision.models.detection import fasterrcnn_resnet50_fpn

from lightdet.api import evaluate
from lightdet.cli.convert import main as convert_main


def _fake_coco(data_dir: Path, shapes_dir: Path, class_names: list[str]) -> None:
    """A COCO-layout val split with the 80 COCO categories, made of two shapes images."""
    src = json.loads((shapes_dir / "annotations" / "val.json").read_text())
    images = src["images"][:2]
    ids = {im["id"] for im in images}
    cat_ids = [c for c in range(1, 91) if c not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]
    anns = [{**a, "category_id": cat_ids[a["category_id"] - 1]} for a in src["annotations"] if a["image_id"] in ids]
    coco = data_dir / "coco"
    (coco / "annotations").mkdir(parents=True)
    (coco / "val2017").mkdir()
    for im in images:
        shutil.copy(shapes_dir / "val" / im["file_name"], coco / "val2017" / im["file_name"])
    cats = [{"id": i, "name": n} for i, n in zip(cat_ids, class_names)]
    payload = {"images": images, "annotations": anns, "categories": cats}
    (coco / "annotations" / "instances_val2017.json").write_text(json.dumps(payload))


@pytest.mark.slow
def test_convert_then_test(tmp_path: Path, shapes_data_dir: Path, compose_cfg) -> None:
    torch.manual_seed(0)
    src = tmp_path / "tv.pth"
    torch.save(fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict(), src)
    dst = tmp_path / "converted.ckpt"
    assert convert_main(["torchvision", "fasterrcnn_resnet50_fpn", str(src), str(dst)]) == 0
    stored = torch.load(dst, map_location="cpu", weights_only=True)
    cfg_stored = OmegaConf.create(stored["lightdet_config"])
    assert cfg_stored.model.roi_head.bbox_roi_extractor.aligned is False
    assert stored["state_dict"]["detector.roi_head.bbox_head.fc_cls.weight"].shape == (81, 1024)

    _fake_coco(tmp_path / "data", shapes_data_dir / "shapes", list(cfg_stored.dataset.classes))
    out = tmp_path / "eval" / "results.json"
    small = ["dataset.pipeline.test.1.scale=[320,320]", "trainer.accelerator=cpu", "trainer.devices=1",
             "trainer.enable_progress_bar=false", "dataset.num_workers=0"]
    overrides = [f"ckpt={dst}", f"out={out}", "split=val", "dataset=coco", *small]
    cfg = compose_cfg(overrides, config_name="test")
    cfg.paths.data_dir = str(tmp_path / "data")
    metrics = evaluate(cfg, overrides=[*overrides, f"paths.data_dir={tmp_path / 'data'}"])
    assert "test/bbox_mAP" in metrics
    assert isinstance(json.loads(out.read_text()), list)


def test_convert_reports_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "bad.pth"
    torch.save({"backbone.body.conv1.weight": torch.zeros(64, 3, 7, 7), "junk.weight": torch.zeros(1)}, src)
    assert convert_main(["torchvision", "fasterrcnn_resnet50_fpn", str(src), str(tmp_path / "x.ckpt")]) == 2
    err = capsys.readouterr().err
    assert "does not fit" in err and "junk.weight" in err and "missing" in err
    assert not (tmp_path / "x.ckpt").exists()


def test_convert_names_a_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert convert_main(["mmdet", "faster_rcnn_r50_fpn_1x_coco", str(tmp_path / "nope.pth"), "x.ckpt"]) == 2
    assert "nope.pth" in capsys.readouterr().err

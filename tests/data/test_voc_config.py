"""``dataset=voc0712`` end to end on VOC-layout fixtures: repeat + concat datasets and the VOC evaluator."""

from __future__ import annotations

import pytest
from format_helpers import write_voc
from hydra.utils import instantiate

from lightdet.data import ConcatDataset, RepeatDataset
from lightdet.evaluation import VocEvaluator
from lightdet.structures import Detections


def test_voc0712_builds_and_evaluates(compose_cfg, tmp_path):
    devkit = tmp_path / "data" / "VOCdevkit"
    for year in ("VOC2007", "VOC2012"):
        write_voc(devkit / year)
    write_voc(devkit / "VOC2007", split="test")
    cfg = compose_cfg(["dataset=voc0712", "dataset.classes=[cat,dog]", "dataset.num_workers=0"])
    dm = instantiate(cfg.dataset.datamodule)
    assert isinstance(dm.train, RepeatDataset) and isinstance(dm.train.dataset, ConcatDataset)
    assert len(dm.train) == 3 * 2 * 2  # two images with boxes per year, repeated 3 times
    batch = next(iter(dm.train_dataloader()))
    assert batch.images.shape[0] == 2 and max(batch.images.shape[-2:]) <= 1000
    evaluator = instantiate(cfg.dataset.evaluator)
    assert isinstance(evaluator, VocEvaluator) and evaluator.mode == "11points"
    for sample in dm.val:  # the ground truth itself, scaled back to the original image
        scale = sample.boxes.new_tensor(sample.meta.scale_factor * 2)
        keep = ~sample.ignore
        det = Detections(sample.boxes[keep] / scale, sample.labels.new_ones(int(keep.sum())).float(),
                         sample.labels[keep])
        evaluator.process([det], [sample.meta])
    assert evaluator.compute().metrics["bbox_mAP"] == pytest.approx(1.0)

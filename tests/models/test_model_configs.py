"""The model config groups compose, follow their interpolations and instantiate into working detectors."""

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from model_builders import make_batch
from omegaconf import DictConfig

from lightdet.config import register_resolvers
from lightdet.models import BoundedIoULoss, L1Loss, ResNet, TwoStageDetector

PRIMARY = """
defaults:
  - model: faster_rcnn
  - _self_
dataset:
  num_classes: 3
hydra:
  searchpath:
    - pkg://lightdet.conf
"""

# What faster_rcnn_r50_fpn_bounded_iou_1x_coco changes: only the box loss node of the R-CNN head.
BOUNDED_IOU_EXPERIMENT = """# @package _global_
model:
  roi_head:
    bbox_head:
      loss_bbox:
        _target_: lightdet.models.BoundedIoULoss
        loss_weight: 10.0
"""


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("conf")
    (path / "primary.yaml").write_text(PRIMARY)
    (path / "experiment").mkdir()
    (path / "experiment" / "bounded_iou.yaml").write_text(BOUNDED_IOU_EXPERIMENT)
    register_resolvers()
    return path


def compose_model(config_dir: Path, *overrides: str) -> DictConfig:
    with initialize_config_dir(str(config_dir), version_base="1.3"):
        return compose("primary", overrides=list(overrides))


def test_faster_rcnn_matches_mmdetection_defaults(config_dir):
    cfg = compose_model(config_dir).model
    assert cfg.backbone.depth == 50 and cfg.backbone.frozen_stages == 1 and cfg.backbone.norm_eval
    assert cfg.neck.in_channels == [256, 512, 1024, 2048] and cfg.neck.num_outs == 5
    assert list(cfg.rpn_head.anchor_generator.strides) == [4, 8, 16, 32, 64]
    assert cfg.rpn_head.test_pre_nms_top_n == 1000 and cfg.rpn_head.train_post_nms_top_n == 1000
    assert cfg.roi_head.bbox_roi_extractor.aligned and cfg.roi_head.bbox_roi_extractor.sampling_ratio == 0
    assert list(cfg.roi_head.bbox_head.box_coder.stds) == [0.1, 0.1, 0.2, 0.2]
    assert cfg.roi_head.bbox_head.num_classes == 3 and cfg.roi_head.sampler.num == 512


@pytest.mark.parametrize(
    ("backbone", "channels"),
    [
        ("resnet18", [64, 128, 256, 512]),
        ("resnet34", [64, 128, 256, 512]),
        ("resnet101", [256, 512, 1024, 2048]),
        ("resnext101_32x4d", [256, 512, 1024, 2048]),
    ],
)
def test_backbone_swap_moves_the_neck(config_dir, backbone, channels):
    cfg = compose_model(config_dir, f"model/backbone={backbone}")
    assert cfg.model.neck.in_channels == channels
    with torch.device("meta"):
        model = instantiate(cfg.model)
    assert isinstance(model.backbone, ResNet) and model.neck.in_channels == channels


def test_class_count_and_loss_swap(config_dir):
    cfg = compose_model(
        config_dir,
        "dataset.num_classes=7",
        "model.roi_head.bbox_head.loss_bbox._target_=lightdet.models.BoundedIoULoss",
        "model.roi_head.bbox_head.loss_bbox.loss_weight=10.0",
    )
    with torch.device("meta"):
        model = instantiate(cfg.model)
    head = model.roi_head.bbox_head
    assert head.fc_cls.out_features == 8 and head.fc_reg.out_features == 28
    assert isinstance(model.roi_head.bbox_head.loss_bbox, BoundedIoULoss)
    assert model.roi_head.bbox_head.loss_bbox.loss_weight == 10.0
    assert isinstance(model.rpn_head.loss_bbox, L1Loss)


def test_experiment_swaps_only_the_box_loss(config_dir):
    cfg = compose_model(config_dir, "+experiment=bounded_iou")
    with torch.device("meta"):
        loss = instantiate(cfg.model.roi_head.bbox_head.loss_bbox)
    assert isinstance(loss, BoundedIoULoss) and loss.loss_weight == 10.0 and loss.beta == 0.2
    assert cfg.model.rpn_head.loss_bbox._target_ == "lightdet.models.L1Loss"


@pytest.mark.parametrize("name", [pytest.param("faster_rcnn", marks=pytest.mark.slow), "faster_rcnn_small"])
def test_configs_train_and_predict(config_dir, name):
    cfg = compose_model(config_dir, f"model={name}")
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    assert isinstance(model, TwoStageDetector)
    batch = make_batch()
    losses = model.train().loss(batch)
    sum(v for k, v in losses.items() if k.startswith("loss")).backward()
    detections = model.eval().predict(batch)
    assert len(detections) == 3 and all(d.boxes.shape[1] == 4 for d in detections)
    assert all(((d.labels >= 0) & (d.labels < 3)).all() for d in detections)

"""The model config groups compose, follow their interpolations and instantiate into working detectors."""

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from model_builders import make_batch
from omegaconf import DictConfig
from omegaconf.errors import InterpolationResolutionError

from lightdet.config import register_resolvers
from lightdet.models import BoundedIoULoss, L1Loss, MobileNetV3, ResNet, TwoStageDetector

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
    ("backbone", "kind", "channels"),
    [
        ("resnet18", ResNet, [64, 128, 256, 512]),
        ("resnet34", ResNet, [64, 128, 256, 512]),
        ("resnet101", ResNet, [256, 512, 1024, 2048]),
        ("resnext101_32x4d", ResNet, [256, 512, 1024, 2048]),
        ("mobilenet_v3_large", MobileNetV3, [24, 40, 112, 960]),
    ],
)
def test_backbone_swap_moves_the_neck(config_dir, backbone, kind, channels):
    cfg = compose_model(config_dir, f"model/backbone={backbone}")
    assert cfg.model.neck.in_channels == channels and cfg.model.neck.in_strides == [4, 8, 16, 32]
    with torch.device("meta"):
        model = instantiate(cfg.model)
    assert isinstance(model.backbone, kind) and model.neck.in_channels == channels
    assert model.neck.strides == list(cfg.model.rpn_head.anchor_generator.strides) == [4, 8, 16, 32, 64]


def test_resnets_share_resnet50s_settings(config_dir):
    cfg = compose_model(config_dir, "model/backbone=resnext101_32x4d").model.backbone
    assert (cfg.depth, cfg.groups, cfg.width_per_group, cfg.frozen_stages, cfg.norm_eval) == (101, 32, 4, 1, True)


def test_preprocessor_group(config_dir):
    assert compose_model(config_dir).model.preprocessor.mean == [123.675, 116.28, 103.53]
    caffe = compose_model(config_dir, "model/preprocessor=caffe").model.preprocessor
    assert caffe.to_bgr and caffe.std == [1.0, 1.0, 1.0] and caffe.size_divisor == 32


def test_cascade_stages_are_the_template_with_their_own_iou_stds_and_weight(config_dir):
    cfg = compose_model(config_dir, "model=cascade_rcnn", "cascade_stage.bbox_head.fc_out_channels=512")
    stages = cfg.model.roi_head.stages
    assert [s.assigner.pos_iou_thr for s in stages] == [0.5, 0.6, 0.7]
    assert [s.assigner.min_pos_iou for s in stages] == [0.5, 0.6, 0.7]
    assert [s.bbox_head.box_coder.stds[2] for s in stages] == [0.2, 0.1, 0.067]
    assert [s.loss_weight for s in stages] == [1.0, 0.5, 0.25]
    assert [s.bbox_head.fc_out_channels for s in stages] == [512] * 3  # the template reaches every stage
    assert all(s.mask_head is None and s.bbox_head.reg_class_agnostic for s in stages)
    masks = compose_model(config_dir, "model=cascade_mask_rcnn").model.roi_head.stages
    assert [s.mask_head.mask_roi_extractor.output_size for s in masks] == [14] * 3
    assert masks[2].mask_head.mask_roi_extractor.strides == [4, 8, 16, 32]


def test_a_misspelt_stage_value_names_the_key(config_dir):
    cfg = compose_model(config_dir, "model=cascade_rcnn")
    cfg.model.roi_head.stages[1] = "${lightdet.merge:${cascade_stage},{loss_wieght:0.5}}"
    with pytest.raises(InterpolationResolutionError, match="loss_wieght"):
        _ = cfg.model.roi_head.stages[1]


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

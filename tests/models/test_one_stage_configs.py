"""RetinaNet / FCOS configs: MMDetection's defaults, small CPU configs that train, and the experiments."""

import pytest
import torch
from hydra.utils import instantiate
from model_builders import make_batch

from lightdet.models import AnchorGenerator, FocalLoss, GIoULoss, IoULoss, SingleStageDetector


def test_retinanet_matches_mmdetection_defaults(compose_cfg):
    cfg = compose_cfg(["model=retinanet", "dataset.classes=[a,b,c]"]).model
    assert cfg.neck.start_level == 1 and cfg.neck.add_extra_convs == "on_input" and cfg.neck.num_outs == 5
    head = cfg.bbox_head
    assert head.num_classes == 3 and head.stacked_convs == 4 and head.assigner.pos_iou_thr == 0.5
    assert head.assigner.neg_iou_thr == 0.4 and head.nms_pre == 1000 and head.max_per_img == 100
    with torch.device("meta"):
        model = instantiate(cfg)
    assert model.bbox_head.retina_cls.out_channels == 9 * 3
    anchors = model.bbox_head.anchor_generator
    assert isinstance(anchors, AnchorGenerator)
    assert anchors.scales == pytest.approx([4, 4 * 2 ** (1 / 3), 4 * 2 ** (2 / 3)])
    assert isinstance(model.bbox_head.loss_cls, FocalLoss) and model.bbox_head.loss_cls.alpha == 0.25


def test_fcos_matches_mmdetection_gn_head(compose_cfg):
    cfg = compose_cfg(["model=fcos", "dataset.classes=[a,b,c]"]).model
    assert cfg.backbone.style == "caffe" and cfg.preprocessor.to_bgr
    assert list(cfg.preprocessor.std) == [1, 1, 1]
    assert cfg.neck.add_extra_convs == "on_output" and cfg.neck.relu_before_extra_convs
    with torch.device("meta"):
        model = instantiate(cfg)
    head = model.bbox_head
    assert head.cls_convs[0].gn.num_groups == 32 and head.cls_convs[0].conv.bias is None
    assert len(head.scales) == 5 and not head.norm_on_bbox and not head.centerness_on_reg
    assert isinstance(head.loss_bbox, IoULoss) and head.loss_bbox.mode == "log"
    assert not head.assigner.center_sampling and head.assigner.regress_ranges[1] == (64, 128)


@pytest.mark.parametrize("name", ["retinanet_small", "fcos_small"])
def test_small_configs_train_and_predict(compose_cfg, name):
    cfg = compose_cfg([f"model={name}", "dataset.classes=[a,b,c]"])
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    assert isinstance(model, SingleStageDetector) and len(model.neck.fpn_convs) == 3
    batch = make_batch()
    losses = model.train().loss(batch)
    sum(losses.values()).backward()
    detections = model.eval().predict(batch)
    assert len(detections) == 3 and all(((d.labels >= 0) & (d.labels < 3)).all() for d in detections)
    if name == "fcos_small":
        assert isinstance(model.bbox_head.loss_bbox, GIoULoss) and model.bbox_head.norm_on_bbox


@pytest.mark.parametrize(
    ("experiment", "model", "lr"),
    [
        ("retinanet_r50_fpn_1x_coco", "retinanet", 0.01),
        ("fcos_r50_fpn_gn-head_1x_coco", "fcos", 0.01),
        ("shapes_retinanet", "retinanet_small", 0.01),
        ("shapes_fcos", "fcos_small", 0.01),
    ],
)
def test_experiments_compose(compose_cfg, experiment, model, lr):
    cfg = compose_cfg([f"experiment={experiment}"])
    assert cfg.name == experiment and cfg.optimizer.lr == lr
    assert cfg.hydra.runtime.choices.model == model
    assert cfg.model.bbox_head.num_classes == cfg.dataset.num_classes


def test_fcos_coco_experiment_has_mmdetection_bias_settings(compose_cfg):
    paramwise = compose_cfg(["experiment=fcos_r50_fpn_gn-head_1x_coco"]).module.paramwise
    assert paramwise.bias_lr_mult == 2.0 and paramwise.bias_decay_mult == 0.0

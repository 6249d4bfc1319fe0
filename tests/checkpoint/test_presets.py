import pytest

from lightdet.checkpoint import PRESETS, compose_model_config, convert, get_preset


def test_known_presets():
    expected = {("torchvision", "fasterrcnn_resnet50_fpn"), ("mmdet", "faster_rcnn_r50_fpn_1x_coco")}
    assert expected <= set(PRESETS)
    with pytest.raises(ValueError, match="known: torchvision fasterrcnn_resnet50_fpn"):
        get_preset("torchvision", "ssd300_vgg16")
    with pytest.raises(ValueError, match="source"):
        convert("detectron2", "x", {})


def test_torchvision_overrides_reach_the_model_config():
    cfg = compose_model_config(get_preset("torchvision", "fasterrcnn_resnet50_fpn")).model
    extractor = cfg.roi_head.bbox_roi_extractor
    assert not extractor.aligned and extractor.sampling_ratio == 2
    assert extractor.level_mapping == "torchvision"
    anchors = cfg.rpn_head.anchor_generator
    assert anchors.round_base_anchors and anchors.strides_from_image
    assert (cfg.rpn_head.train_pre_nms_top_n, cfg.rpn_head.train_post_nms_top_n) == (2000, 2000)
    assert (cfg.rpn_head.test_pre_nms_top_n, cfg.rpn_head.test_post_nms_top_n) == (1000, 1000)
    assert cfg.rpn_head.min_box_size == 0.001 and cfg.roi_head.min_box_size == 0.01
    for loss in (cfg.rpn_head.loss_bbox, cfg.roi_head.bbox_head.loss_bbox):
        assert loss._target_.endswith("SmoothL1Loss") and loss.beta == pytest.approx(1 / 9)
    assert cfg.backbone.norm == "FrozenBN" and not cfg.roi_head.bbox_head.box_coder.clamp_both_sides
    assert cfg.roi_head.bbox_head.num_classes == 90


def test_mmdet_preset_is_the_default_config():
    cfg = compose_model_config(get_preset("mmdet", "faster_rcnn_r50_fpn_1x_coco")).model
    assert cfg.roi_head.bbox_roi_extractor.aligned and cfg.roi_head.bbox_roi_extractor.sampling_ratio == 0
    assert cfg.roi_head.bbox_head.num_classes == 80 and cfg.backbone.norm == "BN"

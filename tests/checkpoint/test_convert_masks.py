"""Key maps of the mask and cascade presets: torchvision Mask R-CNN, MMDetection Mask/Cascade (Mask) R-CNN."""

import re

import pytest
import torch
from torchvision.models.detection import maskrcnn_resnet50_fpn

from lightdet.checkpoint import build_model, convert
from lightdet.checkpoint.from_torchvision import COCO_IDS, convert_mask_rcnn

TV_ARCH = "maskrcnn_resnet50_fpn"


@pytest.fixture(scope="module")
def tv_state() -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        shapes = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict()
    state = {k: torch.full(v.shape, float(i), dtype=v.dtype) for i, (k, v) in enumerate(shapes.items())}
    rows = torch.arange(91, dtype=torch.float32)
    state["roi_heads.mask_predictor.mask_fcn_logits.bias"] = rows.clone()
    state["roi_heads.box_predictor.cls_score.bias"] = rows.clone()
    return state


def test_torchvision_mask_rcnn_key_map(tv_state):
    target = build_model("torchvision", TV_ARCH).state_dict()
    state, report, overrides = convert("torchvision", TV_ARCH, tv_state, target=target)
    assert report.ok, report.summary()
    assert set(state) == set(target)
    assert report.converted["roi_heads.mask_head.3.0.weight"] == "roi_head.mask_head.convs.3.conv.weight"
    assert report.converted["roi_heads.mask_predictor.conv5_mask.bias"] == "roi_head.mask_head.upsample.bias"
    # background channel 0 dropped; class channels in the box classifier's order
    assert state["roi_head.mask_head.conv_logits.bias"].tolist() == list(range(1, 91))
    assert state["roi_head.bbox_head.fc_cls.bias"].tolist() == [*range(1, 91), 0]
    assert overrides[0] == "model=mask_rcnn"
    assert "model.roi_head.mask_head.paste_mode=torchvision" in overrides


def test_torchvision_mask_rcnn_coco80_and_legacy_names(tv_state):
    legacy = {re.sub(r"mask_head\.(\d)\.0\.", lambda m: f"mask_head.mask_fcn{int(m[1]) + 1}.", k): v
              for k, v in tv_state.items()}
    assert "roi_heads.mask_head.mask_fcn1.weight" in legacy
    state, report = convert_mask_rcnn(legacy, coco80=True)
    assert not report.unexpected
    assert state["roi_head.mask_head.conv_logits.bias"].tolist() == list(COCO_IDS)
    assert "roi_head.mask_head.convs.0.conv.weight" in state


def mmdet_style(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """lightdet's cascade keys as MMDetection's (``roi_head.stages.{t}.bbox_head`` -> ``bbox_head.{t}``)."""
    return {re.sub(r"roi_head\.stages\.(\d+)\.(bbox_head|mask_head)\.", r"roi_head.\2.\1.", k): v
            for k, v in state.items()}


@pytest.mark.parametrize(("arch", "mask"), [("cascade_rcnn_r50_fpn_1x_coco", False),
                                            ("cascade_mask_rcnn_r50_fpn_1x_coco", True)])
def test_mmdetection_cascade_key_map(arch, mask):
    target = build_model("mmdet", arch).state_dict()
    source = mmdet_style(target)
    assert "roi_head.bbox_head.2.fc_reg.weight" in source
    assert source["roi_head.bbox_head.2.fc_reg.weight"].shape == (4, 1024)  # class-agnostic
    assert ("roi_head.mask_head.1.conv_logits.weight" in source) == mask
    state, report, overrides = convert("mmdet", arch, {"state_dict": source}, target=target)
    assert report.ok, report.summary()
    assert set(state) == set(target) and overrides == [f"model={arch.removesuffix('_r50_fpn_1x_coco')}"]


def test_mmdetection_mask_rcnn_names_are_identity():
    target = build_model("mmdet", "mask_rcnn_r50_fpn_1x_coco").state_dict()
    published = {"roi_head.mask_head.convs.0.conv.weight": (256, 256, 3, 3),
                 "roi_head.mask_head.upsample.weight": (256, 256, 2, 2),
                 "roi_head.mask_head.conv_logits.weight": (80, 256, 1, 1)}
    assert {k: tuple(target[k].shape) for k in published} == published
    arch = "mask_rcnn_r50_fpn_1x_coco"
    state, report, _ = convert("mmdet", arch, {"state_dict": dict(target)}, target=target)
    assert report.ok and all(k == v for k, v in report.converted.items())

"""Key maps of the RetinaNet / FCOS converters (torchvision and MMDetection) and their presets."""

import pytest
import torch
from torchvision.models.detection import fcos_resnet50_fpn, retinanet_resnet50_fpn

from lightdet.checkpoint import build_model, compose_model_config, convert, get_preset
from lightdet.checkpoint.from_torchvision import COCO_IDS

TV = {"retinanet_resnet50_fpn": retinanet_resnet50_fpn, "fcos_resnet50_fpn": fcos_resnet50_fpn}


def traced_state(arch: str) -> dict[str, torch.Tensor]:
    """torchvision's keys and shapes, each tensor filled with its index; class rows hold their channel."""
    with torch.device("meta"):
        shapes = TV[arch](weights=None, weights_backbone=None).state_dict()
    state = {k: torch.full(v.shape, float(i), dtype=v.dtype) for i, (k, v) in enumerate(shapes.items())}
    bias = "head.classification_head.cls_logits.bias"
    state[bias] = torch.arange(state[bias].numel(), dtype=torch.float32)
    return state


@pytest.fixture(scope="module", params=["retinanet_resnet50_fpn", "fcos_resnet50_fpn"])
def arch_state(request):
    return request.param, traced_state(request.param), build_model("torchvision", request.param).state_dict()


def test_torchvision_key_map_fills_the_model(arch_state):
    arch, state, target = arch_state
    converted, report, overrides = convert("torchvision", arch, state, target=target)
    assert report.ok, report.summary()
    assert set(converted) == set(target)
    assert report.converted["backbone.fpn.extra_blocks.p7.weight"] == "neck.fpn_convs.4.conv.weight"
    assert report.converted["backbone.fpn.inner_blocks.0.0.weight"] == "neck.lateral_convs.0.conv.weight"
    if arch.startswith("retina"):
        assert report.converted["head.regression_head.conv.3.0.bias"] == "bbox_head.reg_convs.3.conv.bias"
        assert overrides[0] == "model=retinanet"
    else:
        expected = {
            "head.classification_head.conv.9.weight": "bbox_head.cls_convs.3.conv.weight",
            "head.regression_head.conv.4.bias": "bbox_head.reg_convs.1.gn.bias",
            "head.regression_head.bbox_ctrness.weight": "bbox_head.conv_centerness.weight",
        }
        assert all(report.converted[k] == v for k, v in expected.items())
        assert overrides[0] == "model=fcos"


@pytest.mark.parametrize(
    ("arch", "key", "anchors"),
    [
        ("retinanet_resnet50_fpn", "bbox_head.retina_cls.bias", 9),
        ("fcos_resnet50_fpn", "bbox_head.conv_cls.bias", 1),
    ],
)
def test_background_slot_dropped_per_anchor(arch, key, anchors):
    state = traced_state(arch)
    target = build_model("torchvision", arch).state_dict()
    converted, _, _ = convert("torchvision", arch, state, target=target)
    expected = [a * 91 + c for a in range(anchors) for c in range(1, 91)]
    assert converted[key].tolist() == expected
    target80 = build_model("torchvision", arch, coco80=True).state_dict()
    converted80, report, _ = convert("torchvision", arch, state, coco80=True, target=target80)
    assert report.ok and converted80[key].tolist() == [a * 91 + c for a in range(anchors) for c in COCO_IDS]


def test_retinanet_pre_0_13_tower_keys():
    state = traced_state("retinanet_resnet50_fpn")
    old = {}
    for k, v in state.items():
        for i in range(4):
            k = k.replace(f"_head.conv.{i}.0.", f"_head.conv.{2 * i}.")
        old[k] = v
    target = build_model("torchvision", "retinanet_resnet50_fpn").state_dict()
    _, report, _ = convert("torchvision", "retinanet_resnet50_fpn", old, target=target)
    assert report.ok, report.summary()
    assert report.converted["head.classification_head.conv.6.weight"] == "bbox_head.cls_convs.3.conv.weight"


@pytest.mark.parametrize("arch", ["retinanet_r50_fpn_1x_coco", "fcos_r50_caffe_fpn_gn-head_1x_coco"])
def test_mmdet_checkpoints_are_checked_identities(arch):
    target = build_model("mmdet", arch).state_dict()
    state = {k: torch.zeros(v.shape) for k, v in target.items()}
    converted, report, overrides = convert("mmdet", arch, {"state_dict": state, "meta": {}}, target=target)
    assert report.ok, report.summary()
    assert set(converted) == set(target) and all(report.converted[k] == k for k in state)
    _, bad, _ = convert("mmdet", arch, {**state, "bbox_head.extra.weight": torch.zeros(1)}, target=target)
    assert bad.unexpected == ["bbox_head.extra.weight"]
    if arch.startswith("fcos"):
        assert "bbox_head.scales.4.scale" in target and "bbox_head.cls_convs.0.gn.weight" in target
        assert "bbox_head.cls_convs.0.conv.bias" not in target  # GN towers: no conv bias


def test_torchvision_presets_reach_the_heads():
    retina = compose_model_config(get_preset("torchvision", "retinanet_resnet50_fpn")).model
    assert retina.bbox_head.anchor_generator.sizes[1] == [64, 80, 101] and retina.bbox_head.max_per_img == 300
    assert retina.neck.add_extra_convs == "on_output" and retina.neck.relu_before_extra_convs
    fcos = compose_model_config(get_preset("torchvision", "fcos_resnet50_fpn")).model
    head = fcos.bbox_head
    assert head.score_mode == "sqrt" and head.score_thr == 0.2 and head.nms.iou_threshold == 0.6
    assert head.conv_bias and not head.learnable_scales and head.point_generator.offset == 0.0
    assert fcos.backbone.style == "pytorch" and not fcos.preprocessor.to_bgr
    mm = compose_model_config(get_preset("mmdet", "fcos_r50_caffe_fpn_gn-head_1x_coco")).model
    assert mm.backbone.style == "caffe" and mm.preprocessor.to_bgr and mm.bbox_head.score_mode == "multiply"

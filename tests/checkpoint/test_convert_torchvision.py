import pytest
import torch
from torchvision.models.detection import fasterrcnn_resnet50_fpn

from lightdet.checkpoint import build_model, convert
from lightdet.checkpoint.from_torchvision import COCO_IDS, COCO_UNUSED_IDS, convert_faster_rcnn

ARCH = "fasterrcnn_resnet50_fpn"


@pytest.fixture(scope="module")
def tv_state() -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        shapes = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict()
    # Every tensor gets distinct contents, the predictor rows their own index, so moves can be traced.
    state = {k: torch.full(v.shape, float(i), dtype=v.dtype) for i, (k, v) in enumerate(shapes.items())}
    rows = torch.arange(91, dtype=torch.float32)
    state["roi_heads.box_predictor.cls_score.weight"] = rows[:, None].expand(91, 1024).clone()
    state["roi_heads.box_predictor.cls_score.bias"] = rows.clone()
    state["roi_heads.box_predictor.bbox_pred.bias"] = torch.arange(364, dtype=torch.float32)
    return state


@pytest.fixture(scope="module")
def target() -> dict[str, torch.Tensor]:
    return build_model("torchvision", ARCH).state_dict()


def test_key_map(tv_state, target):
    state, report, overrides = convert("torchvision", ARCH, tv_state, target=target)
    assert report.ok and set(state) == set(target)
    assert report.converted["backbone.body.layer3.5.conv2.weight"] == "backbone.layer3.5.conv2.weight"
    assert report.converted["backbone.fpn.inner_blocks.2.0.bias"] == "neck.lateral_convs.2.conv.bias"
    assert report.converted["backbone.fpn.layer_blocks.3.0.weight"] == "neck.fpn_convs.3.conv.weight"
    assert report.converted["rpn.head.conv.0.0.weight"] == "rpn_head.rpn_conv.weight"
    assert report.converted["rpn.head.cls_logits.bias"] == "rpn_head.rpn_cls.bias"
    assert report.converted["rpn.head.bbox_pred.weight"] == "rpn_head.rpn_reg.weight"
    assert report.converted["roi_heads.box_head.fc7.weight"] == "roi_head.bbox_head.shared_fcs.1.weight"
    assert report.converted["backbone.body.bn1.running_var"] == "backbone.bn1.running_var"
    key = "layer1.0.bn2.running_mean"
    torch.testing.assert_close(state[f"backbone.{key}"], tv_state[f"backbone.body.{key}"])
    # the torchvision model built without weights uses BatchNorm: its step counters have no FrozenBN slot
    counters = {k for k in tv_state if k.endswith("num_batches_tracked")}
    assert counters and set(report.dropped) == counters
    assert overrides[0] == "model=faster_rcnn"


def test_background_moves_last_and_its_regression_rows_go(tv_state, target):
    state, _, _ = convert("torchvision", ARCH, tv_state, target=target)
    assert state["roi_head.bbox_head.fc_cls.bias"].tolist() == list(range(1, 91)) + [0]
    expected = torch.tensor(list(range(1, 91)) + [0.0])
    torch.testing.assert_close(state["roi_head.bbox_head.fc_cls.weight"][:, 0], expected)
    assert state["roi_head.bbox_head.fc_reg.bias"].tolist() == list(range(4, 364))


def test_coco80_keeps_the_real_categories(tv_state):
    target = build_model("torchvision", ARCH, coco80=True).state_dict()
    state, report, _ = convert("torchvision", ARCH, tv_state, coco80=True, target=target)
    assert report.ok and len(COCO_IDS) == 80 and not set(COCO_IDS) & set(COCO_UNUSED_IDS)
    assert state["roi_head.bbox_head.fc_cls.bias"].tolist() == [*COCO_IDS, 0]
    reg = state["roi_head.bbox_head.fc_reg.bias"].view(80, 4)
    assert reg[:, 0].tolist() == [4 * c for c in COCO_IDS] and reg[1].tolist() == [8, 9, 10, 11]


def test_pre_0_13_key_format_is_accepted(tv_state):
    old = {}
    for k, v in tv_state.items():
        k = k.replace("inner_blocks.0.0.", "inner_blocks.0.").replace("layer_blocks.1.0.", "layer_blocks.1.")
        old[k.replace("rpn.head.conv.0.0.", "rpn.head.conv.")] = v
    state, report = convert_faster_rcnn(old)
    assert not report.unexpected
    renamed = {"neck.lateral_convs.0.conv.weight", "neck.fpn_convs.1.conv.bias", "rpn_head.rpn_conv.weight"}
    assert renamed <= set(state)


def test_unknown_missing_and_misshapen_keys_are_reported(tv_state, target):
    broken = dict(tv_state)
    broken["roi_heads.mask_head.mask_fcn1.weight"] = torch.zeros(1)
    del broken["rpn.head.bbox_pred.bias"]
    broken["roi_heads.box_head.fc6.bias"] = torch.zeros(3)
    state, report, _ = convert("torchvision", ARCH, broken, target=target)
    assert not report.ok
    assert report.unexpected == ["roi_heads.mask_head.mask_fcn1.weight"]
    assert report.missing == ["rpn_head.rpn_reg.bias"]  # a misshapen tensor is a mismatch, not missing
    assert report.shape_mismatch == {"roi_head.bbox_head.shared_fcs.0.bias": ((3,), (1024,))}
    assert "roi_head.bbox_head.shared_fcs.0.bias" not in state
    assert "unexpected: roi_heads.mask_head.mask_fcn1.weight" in report.summary()


def test_bn_counters_are_kept_for_a_batchnorm_target(tv_state):
    with torch.device("meta"):
        bn_target = build_model("mmdet", "faster_rcnn_r50_fpn_1x_coco").state_dict()  # BatchNorm backbone
    bn_target = {k: v for k, v in bn_target.items() if k.startswith("backbone.")}
    backbone_only = {k: v for k, v in tv_state.items() if k.startswith("backbone.body.")}
    state, report, _ = convert("torchvision", ARCH, backbone_only, target=bn_target)
    assert report.ok and not report.dropped and "backbone.bn1.num_batches_tracked" in state

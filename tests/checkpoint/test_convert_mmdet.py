import pytest
import torch

from lightdet.checkpoint import build_model, convert

ARCH = "faster_rcnn_r50_fpn_1x_coco"
BLOCKS = {"layer1": 3, "layer2": 4, "layer3": 6, "layer4": 3}


def bn(prefix: str, c: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.weight": (c,), f"{prefix}.bias": (c,), f"{prefix}.running_mean": (c,),
            f"{prefix}.running_var": (c,), f"{prefix}.num_batches_tracked": ()}


def published_shapes() -> dict[str, tuple[int, ...]]:
    """Key names and shapes of MMDetection's faster_rcnn_r50_fpn_1x_coco checkpoint (written out by hand)."""
    shapes = {"backbone.conv1.weight": (64, 3, 7, 7), **bn("backbone.bn1", 64)}
    c_in = 64
    for i, (layer, n) in enumerate(BLOCKS.items()):
        width = 64 * 2**i
        for b in range(n):
            p = f"backbone.{layer}.{b}"
            shapes[f"{p}.conv1.weight"] = (width, c_in if b == 0 else 4 * width, 1, 1)
            shapes[f"{p}.conv2.weight"] = (width, width, 3, 3)
            shapes[f"{p}.conv3.weight"] = (4 * width, width, 1, 1)
            for j, c in ((1, width), (2, width), (3, 4 * width)):
                shapes.update(bn(f"{p}.bn{j}", c))
            if b == 0:
                shapes[f"{p}.downsample.0.weight"] = (4 * width, c_in, 1, 1)
                shapes.update(bn(f"{p}.downsample.1", 4 * width))
        c_in = 4 * width
    for i, c in enumerate((256, 512, 1024, 2048)):
        shapes[f"neck.lateral_convs.{i}.conv.weight"] = (256, c, 1, 1)
        shapes[f"neck.lateral_convs.{i}.conv.bias"] = (256,)
        shapes[f"neck.fpn_convs.{i}.conv.weight"] = (256, 256, 3, 3)
        shapes[f"neck.fpn_convs.{i}.conv.bias"] = (256,)
    shapes |= {
        "rpn_head.rpn_conv.weight": (256, 256, 3, 3), "rpn_head.rpn_conv.bias": (256,),
        "rpn_head.rpn_cls.weight": (3, 256, 1, 1), "rpn_head.rpn_cls.bias": (3,),
        "rpn_head.rpn_reg.weight": (12, 256, 1, 1), "rpn_head.rpn_reg.bias": (12,),
        "roi_head.bbox_head.shared_fcs.0.weight": (1024, 12544),
        "roi_head.bbox_head.shared_fcs.0.bias": (1024,),
        "roi_head.bbox_head.shared_fcs.1.weight": (1024, 1024),
        "roi_head.bbox_head.shared_fcs.1.bias": (1024,),
        "roi_head.bbox_head.fc_cls.weight": (81, 1024), "roi_head.bbox_head.fc_cls.bias": (81,),
        "roi_head.bbox_head.fc_reg.weight": (320, 1024), "roi_head.bbox_head.fc_reg.bias": (320,),
    }
    return shapes


@pytest.fixture(scope="module")
def checkpoint() -> dict[str, object]:
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(s, generator=g) if s else torch.tensor(5) for k, s in published_shapes().items()}
    return {"meta": {"mmdet_version": "2.25.0", "CLASSES": ["person"] * 80}, "state_dict": state}


def test_published_checkpoint_converts_and_loads(checkpoint):
    state, report, overrides = convert("mmdet", ARCH, checkpoint)
    assert report.ok, report.summary()
    assert not report.dropped and len(report.converted) == len(published_shapes())
    assert all(k == v for k, v in report.converted.items())
    assert overrides == ["model=faster_rcnn"]
    model = build_model("mmdet", ARCH, device="cpu")
    model.load_state_dict(state, strict=True)
    expected = checkpoint["state_dict"]["roi_head.bbox_head.fc_cls.bias"]
    torch.testing.assert_close(model.roi_head.bbox_head.fc_cls.bias, expected)


def test_unknown_keys_are_reported(checkpoint):
    state = dict(checkpoint["state_dict"])
    state["roi_head.mask_head.conv_logits.weight"] = torch.zeros(80, 256, 1, 1)
    state["backbone.fc.weight"] = torch.zeros(1000, 2048)
    del state["neck.fpn_convs.3.conv.bias"]
    _, report, _ = convert("mmdet", ARCH, {"state_dict": state})
    assert sorted(report.unexpected) == ["backbone.fc.weight", "roi_head.mask_head.conv_logits.weight"]
    assert report.missing == ["neck.fpn_convs.3.conv.bias"]


def test_not_a_checkpoint():
    with pytest.raises(ValueError, match="mmdet faster_rcnn_r50_fpn_1x_coco checkpoint"):
        convert("mmdet", ARCH, {"meta": {}})

from collections import OrderedDict

import pytest
import torch
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from lightdet.models import FPN

IN = [8, 16, 32, 64]


def inputs(seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, c, 32 // 2**i, 48 // 2**i, generator=g) for i, c in enumerate(IN)]


def test_maxpool_extra_level_and_names():
    fpn = FPN(IN, 16, 5)
    outs = fpn(inputs())
    assert [tuple(o.shape[-2:]) for o in outs] == [(32, 48), (16, 24), (8, 12), (4, 6), (2, 3)]
    assert all(o.shape[:2] == (2, 16) for o in outs)
    torch.testing.assert_close(outs[4], outs[3][:, :, ::2, ::2])
    assert {"lateral_convs.3.conv.weight", "fpn_convs.3.conv.bias"} <= set(fpn.state_dict())
    assert "fpn_convs.4.conv.weight" not in fpn.state_dict()


def test_equals_torchvision_fpn():
    ours = FPN(IN, 16, 5)
    ref = FeaturePyramidNetwork(IN, 16, extra_blocks=LastLevelMaxPool())
    with torch.no_grad():
        for i in range(4):
            ref.inner_blocks[i][0].weight.copy_(ours.lateral_convs[i].conv.weight)
            ref.inner_blocks[i][0].bias.copy_(ours.lateral_convs[i].conv.bias.normal_())
            ref.layer_blocks[i][0].weight.copy_(ours.fpn_convs[i].conv.weight)
            ref.layer_blocks[i][0].bias.copy_(ours.fpn_convs[i].conv.bias.normal_())
    x = inputs(1)
    expected = list(ref(OrderedDict((str(i), t) for i, t in enumerate(x))).values())
    for a, b in zip(ours(x), expected):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("source", ["on_input", "on_lateral", "on_output"])
def test_extra_convs(source):
    fpn = FPN(IN, 16, 6, start_level=1, add_extra_convs=source, relu_before_extra_convs=True)
    outs = fpn(inputs())
    assert len(outs) == 6 and outs[0].shape[-2:] == (16, 24) and outs[-1].shape[-2:] == (1, 1)
    first_extra_in = IN[-1] if source == "on_input" else 16
    assert fpn.fpn_convs[3].conv.weight.shape == (16, first_extra_in, 3, 3)
    assert len(fpn.lateral_convs) == 3 and len(fpn.fpn_convs) == 6


def test_norm_uses_mmdet_names():
    fpn = FPN(IN, 32, 4, norm="GN")
    keys = set(fpn.state_dict())
    assert "lateral_convs.0.gn.weight" in keys and "lateral_convs.0.conv.bias" not in keys


def test_invalid_arguments():
    with pytest.raises(ValueError, match="num_outs"):
        FPN(IN, 16, 3)
    with pytest.raises(ValueError, match="add_extra_convs"):
        FPN(IN, 16, 5, add_extra_convs="on_top")
    with pytest.raises(ValueError, match="4 inputs"):
        FPN(IN, 16, 5)(inputs()[:3])

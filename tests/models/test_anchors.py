import math

import pytest
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator as TvAnchorGenerator
from torchvision.models.detection.image_list import ImageList

from lightdet.models import AnchorGenerator

S2 = math.sqrt(2.0)


def test_mmdet_base_anchors_known_values():
    gen = AnchorGenerator([4], ratios=[0.5, 1.0, 2.0], scales=[8])
    # ratio = h / w: 0.5 is wide (w = 32 * sqrt 2), 2 is tall; centred on 0, not rounded.
    expected = torch.tensor([
        [-16 * S2, -8 * S2, 16 * S2, 8 * S2],
        [-16.0, -16.0, 16.0, 16.0],
        [-8 * S2, -16 * S2, 8 * S2, 16 * S2],
    ])
    torch.testing.assert_close(gen.base_anchors[0], expected)


def test_torchvision_variant_rounds_base_anchors():
    gen = AnchorGenerator([4], scales=[8], round_base_anchors=True)
    expected = torch.tensor(
        [[-23.0, -11.0, 23.0, 11.0], [-16.0, -16.0, 16.0, 16.0], [-11.0, -23.0, 11.0, 23.0]]
    )
    torch.testing.assert_close(gen.base_anchors[0], expected)


def test_layout_is_height_width_anchor():
    gen = AnchorGenerator([8], ratios=[1.0], scales=[2.0, 4.0])
    anchors = gen([(3, 5)], (24, 40))[0]
    assert anchors.shape == (3 * 5 * 2, 4)
    y, x, a = 2, 3, 1
    row = anchors[(y * 5 + x) * 2 + a]
    torch.testing.assert_close(row, torch.tensor([x * 8 - 16.0, y * 8 - 16.0, x * 8 + 16.0, y * 8 + 16.0]))


def test_center_offset_and_base_sizes():
    gen = AnchorGenerator([16], ratios=[1.0], scales=[1.0], base_sizes=[10], center_offset=0.5)
    torch.testing.assert_close(gen.base_anchors[0], torch.tensor([[3.0, 3.0, 13.0, 13.0]]))


def test_octave_scales():
    gen = AnchorGenerator([8], ratios=[1.0], scales=None, octave_base_scale=4, scales_per_octave=3)
    assert gen.scales == pytest.approx([4.0, 4 * 2 ** (1 / 3), 4 * 2 ** (2 / 3)])
    assert gen.num_base_anchors == 3


def test_strides_from_image_matches_torchvision_quirk():
    # P6 of an 800-high batch has 13 rows: torchvision places them 800 // 13 = 61 px apart.
    gen = AnchorGenerator([64], strides_from_image=True)
    assert gen.level_strides([(13, 19)], (800, 1216)) == [(61, 64)]
    assert AnchorGenerator([64]).level_strides([(13, 19)], (800, 1216)) == [(64, 64)]


def test_equals_torchvision_anchor_generator():
    sizes = ((32,), (64,), (128,))
    ratios = ((0.5, 1.0, 2.0),) * 3
    ref_gen = TvAnchorGenerator(sizes, ratios)
    feats = [torch.zeros(1, 1, 25, 38), torch.zeros(1, 1, 13, 19), torch.zeros(1, 1, 7, 10)]
    images = ImageList(torch.zeros(1, 3, 100, 152), [(100, 152)])
    ref = ref_gen(images, feats)[0]
    ours = AnchorGenerator([4, 8, 16], scales=[8], round_base_anchors=True, strides_from_image=True)
    got = torch.cat(ours([f.shape[-2:] for f in feats], (100, 152)))
    torch.testing.assert_close(got, ref)


def test_invalid_arguments():
    with pytest.raises(ValueError, match="exactly one of scales"):
        AnchorGenerator([4], scales=[8], octave_base_scale=4, scales_per_octave=3)
    with pytest.raises(ValueError, match="base_sizes"):
        AnchorGenerator([4, 8], base_sizes=[4])
    with pytest.raises(ValueError, match="2 strides"):
        AnchorGenerator([4, 8])([(2, 2)], (8, 8))

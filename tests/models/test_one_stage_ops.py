"""Point generator, distance coding, centre-ness, FCOS assignment and explicitly sized anchors."""

import math

import pytest
import torch

from lightdet.models import AnchorGenerator, FCOSAssigner, PointGenerator
from lightdet.models.ops.assigner import IGNORED, NEGATIVE
from lightdet.models.ops.points import box_to_distance, centerness, distance_to_box


def test_points_offsets_and_image_strides():
    mm = PointGenerator([8, 16])([(2, 3), (1, 2)], (16, 24))
    assert mm[0].tolist() == [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12]]
    assert mm[1].tolist() == [[8, 8], [24, 8]]
    tv = PointGenerator([8, 128], offset=0.0, strides_from_image=True)([(2, 3), (1, 3)], (16, 320))
    assert tv[1][:, 0].tolist() == [0, 106, 212]  # 320 // 3, not 128


def test_distance_round_trip_clip_and_centerness():
    points = torch.tensor([[10.0, 20.0], [5.0, 5.0]])
    boxes = torch.tensor([[4.0, 12.0, 30.0, 24.0], [0.0, 0.0, 10.0, 10.0]])
    dist = box_to_distance(points, boxes)
    assert dist.tolist() == [[6, 8, 20, 4], [5, 5, 5, 5]]
    torch.testing.assert_close(distance_to_box(points, dist), boxes)
    assert distance_to_box(points, dist, (22, 25))[0].tolist() == [4, 12, 25, 22]
    expected = math.sqrt(6 / 20 * 4 / 8)
    torch.testing.assert_close(centerness(dist), torch.tensor([expected, 1.0]))


def test_fcos_assigner_ranges_smallest_box_and_centre_sampling():
    points = torch.tensor([[10.0, 10.0], [30.0, 30.0], [12.0, 12.0], [60.0, 60.0]])
    strides = torch.tensor([8.0, 8.0, 16.0, 8.0])
    assigner = FCOSAssigner([(-1, 16), (16, 1e8)])
    ranges = torch.tensor([[-1.0, 16.0], [-1.0, 16.0], [16.0, 1e8], [-1.0, 16.0]])
    gt = torch.tensor([[0.0, 0.0, 40.0, 40.0], [4.0, 4.0, 20.0, 20.0]])
    # point 0: inside both, big box max distance 30 > 16 -> the small one (max 10); point 1: only the big
    # box, distance 30 out of P3's range; point 2 on P4: small box reach 8 < 16, big box 28 -> big;
    # point 3: outside both.
    assert assigner.assign(points, strides, ranges, gt).tolist() == [1, NEGATIVE, 0, NEGATIVE]
    wide = FCOSAssigner([(-1, 1e8), (-1, 1e8)])
    all_ranges = torch.tensor([[-1.0, 1e8]]).expand(4, 2)
    assert wide.assign(points, strides, all_ranges, gt).tolist() == [1, 0, 1, NEGATIVE]  # smallest area wins
    # centre sampling, radius 1 stride around (20, 20): (10, 10) on stride 8 is outside [12, 28]^2,
    # (30, 30) on stride 16 inside [4, 36]^2
    sampled = FCOSAssigner([(-1, 1e8)] * 2, center_sampling=True, center_sample_radius=1.0)
    got = sampled.assign(points[:2], torch.tensor([8.0, 16.0]), all_ranges[:2], gt[:1])
    assert got.tolist() == [NEGATIVE, 0]
    crowd = wide.assign(points, strides, all_ranges, gt[:0], ignore_boxes=torch.tensor([[50.0, 50, 70, 70]]))
    assert crowd.tolist() == [NEGATIVE, NEGATIVE, NEGATIVE, IGNORED]
    assert assigner.level_ranges([2, 1]).tolist() == [[-1, 16], [-1, 16], [16, 1e8]]
    with pytest.raises(ValueError, match="regress_ranges"):
        FCOSAssigner([(5, 1)])


def test_sized_anchors_match_torchvision():
    from torchvision.models.detection.anchor_utils import AnchorGenerator as TVAnchorGenerator
    from torchvision.models.detection.image_list import ImageList

    sizes = ((32, 40, 50), (64, 80, 101))
    ours = AnchorGenerator([8, 16], scales=None, sizes=sizes, round_base_anchors=True, strides_from_image=True)
    assert ours.num_base_anchors == 9
    feats = [torch.zeros(1, 1, 6, 5), torch.zeros(1, 1, 3, 3)]
    images = ImageList(torch.zeros(1, 3, 48, 40), [(48, 40)])
    reference = TVAnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * 2)(images, feats)
    got = torch.cat(ours([(6, 5), (3, 3)], (48, 40)))
    torch.testing.assert_close(got, reference[0])
    with pytest.raises(ValueError, match="size list"):
        AnchorGenerator([8, 16], scales=None, sizes=[(32, 40), (64,)])
    with pytest.raises(ValueError, match="exactly one of"):
        AnchorGenerator([8, 16], scales=(8.0,), sizes=sizes)

import math

import torch
from torchvision.models.detection._utils import BoxCoder

from lightdet.models import DeltaXYWHCoder

RCNN_STDS = (0.1, 0.1, 0.2, 0.2)


def random_boxes(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 100
    return torch.cat([xy, xy + 1 + torch.rand(n, 2, generator=g) * 80], 1)


def test_known_deltas():
    prior = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    target = torch.tensor([[5.0, 5.0, 25.0, 15.0]])  # centre (5, 5) -> (15, 10), size 10x10 -> 20x10
    rpn_deltas = DeltaXYWHCoder().encode(prior, target)
    torch.testing.assert_close(rpn_deltas, torch.tensor([[1.0, 0.5, math.log(2), 0.0]]))
    rcnn_deltas = DeltaXYWHCoder(stds=RCNN_STDS).encode(prior, target)
    torch.testing.assert_close(rcnn_deltas, torch.tensor([[10.0, 5.0, 5 * math.log(2), 0.0]]))


def test_round_trip_with_means_and_stds():
    coder = DeltaXYWHCoder(means=(0.1, -0.1, 0.05, 0.0), stds=RCNN_STDS)
    priors, targets = random_boxes(50, 0), random_boxes(50, 1)
    decoded = coder.decode(priors, coder.encode(priors, targets))
    torch.testing.assert_close(decoded, targets, atol=1e-3, rtol=1e-5)


def test_per_class_decode():
    coder = DeltaXYWHCoder(stds=RCNN_STDS)
    priors = random_boxes(6, 2)
    deltas = torch.randn(6, 3, 4, generator=torch.Generator().manual_seed(3))
    boxes = coder.decode(priors, deltas)
    assert boxes.shape == (6, 3, 4)
    torch.testing.assert_close(boxes[:, 1], coder.decode(priors, deltas[:, 1]))


def test_rcnn_stds_equal_torchvision_weights():
    ref = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    ours = DeltaXYWHCoder(stds=RCNN_STDS, clamp_both_sides=False)
    priors, targets = random_boxes(40, 4), random_boxes(40, 5)
    expected = ref.encode_single(targets, priors)
    torch.testing.assert_close(ours.encode(priors, targets), expected, rtol=1e-5, atol=1e-5)
    deltas = torch.randn(40, 8, generator=torch.Generator().manual_seed(6))
    expected = ref.decode_single(deltas, priors).view(40, 2, 4)
    torch.testing.assert_close(ours.decode(priors, deltas.view(40, 2, 4)), expected)


def test_size_clamp():
    prior = torch.tensor([[0.0, 0.0, 16.0, 16.0]])
    grow = DeltaXYWHCoder().decode(prior, torch.tensor([[0.0, 0.0, 10.0, 10.0]]))
    # at most 1000 / 16 times wider: 1000 px around the centre 8
    torch.testing.assert_close(grow, torch.tensor([[-492.0, -492.0, 508.0, 508.0]]))
    shrink = torch.tensor([[0.0, 0.0, -10.0, -10.0]])
    w_both = DeltaXYWHCoder().decode(prior, shrink)[0, 2] - DeltaXYWHCoder().decode(prior, shrink)[0, 0]
    w_max_only = DeltaXYWHCoder(clamp_both_sides=False).decode(prior, shrink)
    assert math.isclose(float(w_both), 16 * 16 / 1000, rel_tol=1e-4)
    assert math.isclose(float(w_max_only[0, 2] - w_max_only[0, 0]), 16 * math.exp(-10), rel_tol=1e-3)


def test_decode_clips_to_image():
    prior = torch.tensor([[-5.0, 0.0, 30.0, 50.0]])
    boxes = DeltaXYWHCoder().decode(prior, torch.zeros(1, 4), image_size=(40, 20))
    torch.testing.assert_close(boxes, torch.tensor([[0.0, 0.0, 20.0, 40.0]]))

import math

import pytest
import torch

from lightdet.models import BoundedIoULoss, CrossEntropyLoss, DeltaXYWHCoder, GIoULoss, L1Loss, SmoothL1Loss
from lightdet.models.losses import box_regression_loss


def test_softmax_cross_entropy_hand_value():
    loss = CrossEntropyLoss()(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([2]))
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1) + math.exp(-2)), rel=1e-6)


def test_sigmoid_cross_entropy_hand_value_and_avg_factor():
    pred, target = torch.tensor([0.0, 2.0]), torch.tensor([1.0, 0.0])
    per_elem = [math.log(2), math.log(1 + math.exp(2))]
    bce = CrossEntropyLoss(use_sigmoid=True)
    assert bce(pred, target).item() == pytest.approx(sum(per_elem) / 2, rel=1e-6)
    assert bce(pred, target, avg_factor=4).item() == pytest.approx(sum(per_elem) / 4)
    weighted = CrossEntropyLoss(use_sigmoid=True, loss_weight=2.0, reduction="sum")
    assert weighted(pred, target, weight=torch.tensor([1.0, 0.0])).item() == pytest.approx(2 * math.log(2))
    with pytest.raises(ValueError, match="target"):
        CrossEntropyLoss(use_sigmoid=True)(pred, target[:1])


def test_l1_and_smooth_l1_hand_values():
    pred, target = torch.tensor([[1.0, 2.0, 3.0, 4.5]]), torch.tensor([[2.0, 2.0, 2.5, 2.5]])
    assert L1Loss(reduction="sum")(pred, target).item() == pytest.approx(1 + 0 + 0.5 + 2)
    assert L1Loss()(pred, target).item() == pytest.approx(3.5 / 4)
    # |d| = 1, 0, 0.5, 2 with beta 1: 0.5, 0, 0.125, 1.5
    assert SmoothL1Loss(beta=1.0, reduction="sum")(pred, target).item() == pytest.approx(2.125)
    assert SmoothL1Loss(beta=1.0, reduction="none")(pred, target).tolist() == [[0.5, 0.0, 0.125, 1.5]]
    assert L1Loss(loss_weight=3.0)(pred, target, avg_factor=2).item() == pytest.approx(3 * 3.5 / 2)


def test_giou_hand_value():
    # intersection 1, union 7, enclosing box 9: GIoU = 1/7 - 2/9
    loss = GIoULoss()(torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 1.0, 3.0, 3.0]]))
    assert loss.item() == pytest.approx(1 - (1 / 7 - 2 / 9), rel=1e-5)


def test_bounded_iou_hand_value():
    pred, target = torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.tensor([[2.0, 0.0, 12.0, 10.0]])
    eps, beta = 1e-3, 0.2
    l_x = 1 - (10 - 2 * 2) / (10 + 2 * 2 + eps)  # centres 2 px apart along x
    l_same = 1 - 10 / (10 + eps)  # y offset 0, equal widths/heights
    expected = [l_x - 0.5 * beta] + [0.5 * l_same**2 / beta] * 3
    got = BoundedIoULoss(beta=beta, eps=eps, reduction="none")(pred, target)
    torch.testing.assert_close(got, torch.tensor([expected]))
    assert BoundedIoULoss()(pred, target).item() == pytest.approx(sum(expected) / 4, rel=1e-5)


def test_target_spaces_drive_box_regression_loss():
    assert L1Loss.target_space == SmoothL1Loss.target_space == "deltas"
    assert GIoULoss.target_space == BoundedIoULoss.target_space == "boxes"
    coder = DeltaXYWHCoder(stds=(0.1, 0.1, 0.2, 0.2))
    priors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 25.0, 45.0]])
    gt = torch.tensor([[1.0, 1.0, 11.0, 12.0], [4.0, 6.0, 22.0, 40.0]])
    deltas = torch.randn(2, 4, generator=torch.Generator().manual_seed(0))
    expected_giou = GIoULoss(reduction="sum")(coder.decode(priors, deltas), gt)
    giou = box_regression_loss(GIoULoss(), coder, deltas, priors, gt, 1.0)
    assert giou.item() == pytest.approx(expected_giou.item())
    expected_l1 = L1Loss(reduction="sum")(deltas, coder.encode(priors, gt))
    l1 = box_regression_loss(L1Loss(), coder, deltas, priors, gt, 1.0)
    assert l1.item() == pytest.approx(expected_l1.item())
    with pytest.raises(ValueError, match="target_space"):
        box_regression_loss(torch.nn.MSELoss(), coder, deltas, priors, gt, 1.0)


def test_empty_inputs_give_zero_with_gradient():
    pred = torch.zeros(0, 4, requires_grad=True)
    for loss in (L1Loss(), SmoothL1Loss(), GIoULoss(), BoundedIoULoss()):
        value = loss(pred, torch.zeros(0, 4), avg_factor=5)
        assert value.item() == 0 and value.requires_grad


def test_invalid_reduction():
    with pytest.raises(ValueError, match="reduction"):
        L1Loss(reduction="avg")

"""Focal, GHM-C and IoU losses against hand-computed values."""

import math

import pytest
import torch

from lightdet.models import FocalLoss, GHMCLoss, IoULoss


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_focal_hand_value_with_labels_and_background():
    pred = torch.tensor([[0.0, 2.0], [1.0, -1.0]])
    labels = torch.tensor([1, 2])  # 2 = background: both classes negative
    alpha, gamma = 0.25, 2.0

    def neg(x):  # -(1 - alpha) p^gamma log(1 - p)
        p = sigmoid(x)
        return -(1 - alpha) * p**gamma * math.log(1 - p)

    def pos(x):  # -alpha (1 - p)^gamma log(p)
        p = sigmoid(x)
        return -alpha * (1 - p) ** gamma * math.log(p)

    elements = [neg(0.0), pos(2.0), neg(1.0), neg(-1.0)]
    loss = FocalLoss(alpha, gamma, reduction="none")(pred, labels)
    torch.testing.assert_close(loss, torch.tensor(elements).view(2, 2))
    assert FocalLoss()(pred, labels, avg_factor=1).item() == pytest.approx(sum(elements), rel=1e-5)
    # per-anchor weight 0 removes the second row; float one-hot targets give the same value
    weighted = FocalLoss(loss_weight=2.0, reduction="sum")(pred, torch.tensor([[0.0, 1.0], [0.0, 0.0]]),
                                                            weight=torch.tensor([1.0, 0.0]))
    assert weighted.item() == pytest.approx(2 * (elements[0] + elements[1]), rel=1e-5)


@pytest.mark.parametrize(
    ("alpha", "gamma", "reduction", "avg_factor", "weighted"),
    [
        (0.25, 2.0, "mean", 7.0, True),  # RetinaNet / FCOS: per-anchor weights, positives as normaliser
        (0.25, 2.0, "mean", None, False),
        (0.25, 1.5, "sum", None, True),
        (-1.0, 2.0, "sum", None, False),  # alpha disabled
        (0.5, 0.0, "mean", 3.0, True),  # gamma 0: plain BCE
    ],
)
def test_focal_with_labels_matches_torchvision_value_and_gradient(alpha, gamma, reduction, avg_factor, weighted):
    """Integer labels take the analytic path (no one-hot tensor, hand-written backward): its value and its
    gradient equal torchvision's sigmoid_focal_loss on one-hot targets, large logits included."""
    from torchvision.ops import sigmoid_focal_loss

    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(300, 7, generator=g) * 4).double()
    logits[0, 3], logits[1, 2], logits[2, 5] = 30.0, -30.0, 25.0  # saturated sigmoid, on positives too
    labels = torch.randint(0, 8, (300,), generator=g)  # 7 = background
    labels[:3] = torch.tensor([3, 2, 7])
    weight = (torch.rand(300, generator=g) > 0.2).double() if weighted else None
    ours = logits.clone().requires_grad_(True)
    loss = FocalLoss(alpha, gamma, loss_weight=1.5, reduction=reduction)(ours, labels, weight, avg_factor)
    ref_in = logits.clone().requires_grad_(True)
    onehot = torch.nn.functional.one_hot(labels, 8)[:, :7].double()
    ref = sigmoid_focal_loss(ref_in, onehot, alpha=alpha, gamma=gamma, reduction="none")
    ref = ref * weight[:, None] if weighted else ref
    ref = ref.sum() / (avg_factor or ref.numel()) if reduction == "mean" else ref.sum()
    ref = 1.5 * ref
    torch.testing.assert_close(loss, ref, rtol=1e-10, atol=1e-10)
    (loss * 3).backward()
    (ref * 3).backward()
    torch.testing.assert_close(ours.grad, ref_in.grad, rtol=1e-9, atol=1e-12)


def test_focal_with_labels_handles_an_all_background_batch_and_float32():
    logits = torch.randn(50, 4, dtype=torch.float32, requires_grad=True)
    labels = torch.full((50,), 4)
    loss = FocalLoss(reduction="sum")(logits, labels)
    ref = FocalLoss(reduction="sum")(logits.detach(), torch.zeros(50, 4))  # float targets: torchvision's path
    torch.testing.assert_close(loss.detach(), ref, rtol=1e-5, atol=1e-6)
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_focal_rejects_bad_targets():
    with pytest.raises(ValueError, match="int64"):
        FocalLoss()(torch.zeros(3, 2), torch.zeros(3))
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.2 .* from 0 to 3"):
        FocalLoss()(torch.zeros(3, 2), torch.tensor([0, 3, 1]))
    with pytest.raises(ValueError, match="gamma"):
        FocalLoss(gamma=-1)


def test_ghmc_hand_value_without_momentum():
    # g = |sigmoid(x) - y|: 0.5, 0.5, sigmoid(-3)=0.047 and 1 - sigmoid(3)=0.047 -> bins 5, 5, 0, 0.
    pred = torch.tensor([[0.0, 0.0], [-3.0, 3.0]])
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    tot = 4  # valid elements; 2 non-empty bins of 2 elements each: weight = tot / 2 / 2 = 1
    bce = [math.log(2), math.log(2), math.log(1 + math.exp(-3)), math.log(1 + math.exp(-3))]
    loss = GHMCLoss(bins=10, momentum=0.0)(pred, target)
    assert loss.item() == pytest.approx(sum(w * b for w, b in zip([1, 1, 1, 1], bce)) / tot, rel=1e-5)
    # Ignoring element (0, 1): tot = 3, bin 5 holds 1 (weight 3/1/2 = 1.5), bin 0 holds 2 (weight 0.75).
    weight = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    got = GHMCLoss(bins=10, momentum=0.0)(pred, target, weight=weight)
    assert got.item() == pytest.approx((1.5 * bce[0] + 0.75 * (bce[2] + bce[3])) / 3, rel=1e-5)


def test_ghmc_momentum_accumulates_bin_counts():
    pred, target = torch.tensor([[0.0, -3.0]]), torch.tensor([[1.0, 0.0]])
    loss = GHMCLoss(bins=10, momentum=0.75)
    loss(pred, target)  # acc: bin 5 and bin 0 each 0.25 * 1
    assert loss.acc_sum[5].item() == pytest.approx(0.25) and loss.acc_sum[0].item() == pytest.approx(0.25)
    second = loss(pred, target)  # acc = 0.75 * 0.25 + 0.25 = 0.4375; weight = 2 / 0.4375 / 2
    w = 2 / 0.4375 / 2
    expected = w * (math.log(2) + math.log(1 + math.exp(-3))) / 2
    assert second.item() == pytest.approx(expected, rel=1e-5)
    assert "acc_sum" not in loss.state_dict()


def test_iou_loss_modes_hand_values():
    pred, target = torch.tensor([[0.0, 0.0, 2.0, 2.0]]), torch.tensor([[1.0, 0.0, 3.0, 2.0]])
    iou = 2 / 6
    assert IoULoss()(pred, target).item() == pytest.approx(-math.log(iou), rel=1e-5)
    assert IoULoss("linear")(pred, target).item() == pytest.approx(1 - iou, rel=1e-5)
    square = IoULoss("square", loss_weight=2.0)(pred, target)
    assert square.item() == pytest.approx(2 * (1 - iou**2), rel=1e-5)
    weighted = IoULoss("linear")(pred.repeat(2, 1), target.repeat(2, 1), weight=torch.tensor([0.5, 0.0]),
                                 avg_factor=0.5)
    assert weighted.item() == pytest.approx(1 - iou, rel=1e-5)
    assert IoULoss.target_space == "boxes"
    with pytest.raises(ValueError, match="mode"):
        IoULoss("cube")

"""DynamicSoftLabelAssigner and quality focal loss against cases worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from lightdet.models import DynamicSoftLabelAssigner, QualityFocalLoss
from lightdet.models.losses import quality_focal_loss
from lightdet.models.ops.dynamic_soft_label_assigner import box_overlaps, dynamic_k_matching

LOG2 = math.log(2.0)

# Two overlapping ground truths A = [0,0,8,8] (class 0) and B = [2,0,10,8] (class 1), centres (4,4) and
# (6,4). Four stride-4 points on y = 4: p0 inside A only, p1 inside both, p2 inside B only, p3 in neither.
GT_BOXES = torch.tensor([[0.0, 0.0, 8.0, 8.0], [2.0, 0.0, 10.0, 8.0]])
GT_LABELS = torch.tensor([0, 1])
POINTS = torch.tensor([[1.0, 4.0], [5.0, 4.0], [9.0, 4.0], [12.0, 4.0]])
STRIDES = torch.full((4,), 4.0)
# predicted boxes: IoU(p0, A) = 1, IoU(p0, B) = 48 / 80; IoU(p1, .) = 56 / 72 both; p2 mirrors p0
PRED_BOXES = torch.tensor(
    [[0.0, 0.0, 8.0, 8.0], [1.0, 0.0, 9.0, 8.0], [2.0, 0.0, 10.0, 8.0], [12.0, 0.0, 16.0, 8.0]]
)
# logits 0 (sigmoid 0.5) except p1's class-1 logit 1.0, which makes p1 cheaper for B than for A
LOGITS = torch.tensor([[0.0, 0.0], [0.0, 1.0], [0.0, 0.0], [0.0, 0.0]])


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def _hand_cost(q: float, own_logit: float, other_logit: float, distance: float) -> float:
    """cost = QFL(own class: target q; other class: target 0) - 3 log(q + 1e-7) + 10 ** (distance - 3)."""
    own = (_softplus(own_logit) - q * own_logit) * abs(
        q - _sigmoid(own_logit)
    ) ** 2  # BCE = softplus(x) - q x
    other = _softplus(other_logit) * _sigmoid(other_logit) ** 2
    return own + other - 3 * math.log(q + 1e-7) + 10 ** (distance - 3)


def test_hand_worked_numbers_agree_with_the_formula():
    # p0 for A: log 2 * (0.5^2 + 0.5^2) = 0.3465736, -3 log(1 + 1e-7) = -3e-7, 10 ** (0.75 - 3) = 0.0056234
    assert _hand_cost(1.0, 0.0, 0.0, 0.75) == pytest.approx(0.3465736 - 3e-7 + 0.0056234, abs=1e-6)
    # p1 for B: class 0 log 2 / 4 = 0.1732868; class 1 (softplus(1) - 7/9) (7/9 - 0.7310586)^2 = 0.0011688;
    # -3 log(7/9) = 0.7539433; 10 ** (0.25 - 3) = 0.0017783
    assert _hand_cost(7 / 9, 1.0, 0.0, 0.25) == pytest.approx(
        0.1732868 + 0.0011688 + 0.7539433 + 0.0017783, abs=1e-6
    )


def test_cost_matrix_of_the_candidates():
    assigner = DynamicSoftLabelAssigner(topk=13)
    cost, ious = assigner.cost_matrix(
        LOGITS[:3], PRED_BOXES[:3], POINTS[:3], STRIDES[:3], GT_BOXES, GT_LABELS
    )
    expected_ious = torch.tensor([[1.0, 0.6], [7 / 9, 7 / 9], [0.6, 1.0]])
    torch.testing.assert_close(ious, expected_ious)
    # rows p0..p2, columns A, B: worked by hand (see test_hand_worked_numbers_agree_with_the_formula)
    expected = torch.tensor([
        [0.3521967, 1.7304780],  # A: q 1, d 0.75          B: q 0.6, d 1.25
        [1.5110743, 0.9301772],  # A: q 7/9, class-1 logit 1 (cost 0.7018691), d 0.25    B: q 7/9, d 0.25
        [1.7304780, 0.3521967],  # A: q 0.6, d 1.25        B: q 1, d 0.75
    ])  # fmt: skip
    torch.testing.assert_close(cost, expected, atol=1e-5, rtol=0)  # float32
    by_formula = [
        [_hand_cost(1.0, 0, 0, 0.75), _hand_cost(0.6, 0, 0, 1.25)],
        [_hand_cost(7 / 9, 0, 1, 0.25), _hand_cost(7 / 9, 1, 0, 0.25)],
        [_hand_cost(0.6, 0, 0, 1.25), _hand_cost(1.0, 0, 0, 0.75)],
    ]
    torch.testing.assert_close(cost, torch.tensor(by_formula), atol=1e-5, rtol=0)


def test_dynamic_k_and_the_conflict_go_to_the_cheaper_ground_truth():
    # k_A = int(1 + 7/9 + 0.6) = 2 -> {p0, p1}; k_B = 2 -> {p2, p1}; p1 costs 1.511 for A, 0.930 for B -> B
    gt_index = DynamicSoftLabelAssigner(topk=13).assign(
        LOGITS, PRED_BOXES, POINTS, STRIDES, GT_BOXES, GT_LABELS
    )
    assert gt_index.tolist() == [0, 1, 1, -1]
    # with the top-2 IoUs only, k_A = k_B = int(1 + 7/9) = 1: A keeps p0, B keeps p2, p1 stays negative
    top2 = DynamicSoftLabelAssigner(topk=2).assign(LOGITS, PRED_BOXES, POINTS, STRIDES, GT_BOXES, GT_LABELS)
    assert top2.tolist() == [0, -1, 1, -1]


def test_dynamic_k_matching_on_a_raw_matrix():
    cost = torch.tensor([[1.0, 5.0], [2.0, 1.0], [3.0, 2.0], [0.5, 9.0]])
    ious = torch.tensor([[0.9, 0.1], [0.8, 0.9], [0.1, 0.7], [0.05, 0.0]])
    # k = int(sum of the top-3 IoUs): column 0 -> int(1.8) = 1, column 1 -> int(1.7) = 1
    assert dynamic_k_matching(cost, ious, 3).tolist() == [-1, 1, -1, 0]
    ious2 = torch.tensor([[0.9, 0.1], [0.9, 0.9], [0.3, 0.7], [0.05, 0.0]])
    # column 0: k = int(2.15) = 2 -> rows 3, 0; column 1: k = int(1.7) = 1 -> row 1
    assert dynamic_k_matching(cost, ious2, 4).tolist() == [0, 1, -1, 0]


def test_no_candidates_or_no_ground_truth_give_only_negatives():
    assigner = DynamicSoftLabelAssigner()
    far = torch.tensor([[100.0, 100.0]]).expand(4, 2)
    assert assigner.assign(LOGITS, PRED_BOXES, far, STRIDES, GT_BOXES, GT_LABELS).tolist() == [-1] * 4
    empty = torch.zeros((0, 4))
    none = assigner.assign(LOGITS, PRED_BOXES, POINTS, STRIDES, empty, torch.zeros(0, dtype=torch.int64))
    assert none.tolist() == [-1] * 4


def test_box_overlaps_keeps_mmdetections_unclamped_areas():
    a = torch.tensor([[0.0, 0.0, 4.0, 4.0], [2.0, 2.0, 0.0, 0.0]])  # the second box is inverted
    b = torch.tensor([[2.0, 0.0, 6.0, 4.0], [0.0, 0.0, 4.0, 4.0]])
    # [0,0,4,4] vs [2,0,6,4]: overlap 8, union 24; inverted box: area (-2)(-2) = 4, no overlap -> 0
    assert box_overlaps(a, b, aligned=True).tolist() == pytest.approx([1 / 3, 0.0])
    assert box_overlaps(a, b)[0].tolist() == pytest.approx([1 / 3, 1.0])


def test_quality_focal_loss_by_hand():
    logits = torch.tensor([[0.0, 2.0]])
    soft = torch.tensor([[0.5, 0.0]])
    # class 0: BCE(0, 0.5) |0.5 - 0.5|^2 = 0; class 1: softplus(2) sigmoid(2)^2 = 2.1269280 * 0.7758034
    expected = math.log1p(math.exp(2.0)) * (1 / (1 + math.exp(-2.0))) ** 2
    assert quality_focal_loss(logits, soft).item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(1.6500782, abs=1e-6)
    loss = QualityFocalLoss(loss_weight=2.0)
    assert loss(logits, soft, avg_factor=4.0).item() == pytest.approx(2 * expected / 4, rel=1e-6)
    # int labels give hard targets: label 1 -> target 1 for class 1: BCE(2, 1) (1 - s(2))^2 + BCE(0, 0) / 4
    hard = math.log1p(math.exp(-2.0)) * (1 - 1 / (1 + math.exp(-2.0))) ** 2 + LOG2 * 0.25
    assert QualityFocalLoss()(logits, torch.tensor([1])).item() == pytest.approx(hard, rel=1e-6)

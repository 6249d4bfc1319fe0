import math

import torch

from lightdet.models import NMS, SoftNMS

# Box 1 overlaps box 0 with IoU 50 / 150 = 1/3; box 2 is far away.
BOXES = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 0.0, 15.0, 10.0], [50.0, 50.0, 60.0, 60.0]])
SCORES = torch.tensor([0.9, 0.8, 0.3])


def test_hard_nms_is_class_aware():
    same = torch.zeros(3, dtype=torch.int64)
    keep, scores = NMS(0.3)(BOXES, SCORES, same)
    assert keep.tolist() == [0, 2] and scores.tolist() == [SCORES[0].item(), SCORES[2].item()]
    keep, _ = NMS(0.3)(BOXES, SCORES, torch.tensor([0, 1, 0]))
    assert keep.tolist() == [0, 1, 2]
    keep, _ = NMS(0.5)(BOXES, SCORES, same, max_num=2)
    assert keep.tolist() == [0, 1]


def test_soft_nms_linear_decay():
    keep, scores = SoftNMS(0.3, method="linear")(BOXES, SCORES, torch.zeros(3, dtype=torch.int64))
    assert keep.tolist() == [0, 1, 2]
    torch.testing.assert_close(scores, torch.tensor([0.9, 0.8 * (1 - 1 / 3), 0.3]))
    _, untouched = SoftNMS(0.4, method="linear")(BOXES, SCORES, torch.zeros(3, dtype=torch.int64))
    torch.testing.assert_close(untouched, SCORES)


def test_soft_nms_gaussian_decay_reorders_and_drops():
    scores = torch.tensor([0.9, 0.7, 0.6])
    labels = torch.zeros(3, dtype=torch.int64)
    decayed = 0.7 * math.exp(-(1 / 9) / 0.5)  # 0.56: box 1 now ranks below box 2
    keep, new = SoftNMS(method="gaussian", sigma=0.5)(BOXES, scores, labels)
    assert keep.tolist() == [0, 2, 1]
    torch.testing.assert_close(new, torch.tensor([0.9, 0.6, decayed]))
    keep, _ = SoftNMS(method="gaussian", sigma=0.5, min_score=0.58)(BOXES, scores, labels)
    assert keep.tolist() == [0, 2]
    keep, _ = SoftNMS(method="gaussian", sigma=0.5)(BOXES, scores, torch.tensor([0, 1, 0]))
    assert keep.tolist() == [0, 1, 2]  # different labels never decay each other


def test_soft_nms_stops_at_max_num_and_handles_empty():
    keep, _ = SoftNMS()(BOXES, SCORES, torch.zeros(3, dtype=torch.int64), max_num=1)
    assert keep.tolist() == [0]
    keep, scores = SoftNMS()(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64))
    assert keep.shape == (0,) and scores.shape == (0,)

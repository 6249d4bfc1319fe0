import torch

from lightdet.models import MaxIoUAssigner
from lightdet.models.ops import IGNORED, NEGATIVE


def t(rows):
    return torch.tensor(rows, dtype=torch.float32)


GT = t([[0, 0, 10, 10], [100, 100, 110, 110]])


def test_thresholds_and_low_quality_match():
    boxes = t([
        [0, 0, 10, 10],  # IoU 1 with gt 0 -> positive
        [0, 0, 10, 5],  # IoU 0.5 -> between thresholds -> ignored
        [50, 50, 60, 60],  # IoU 0 -> negative
        [104, 104, 114, 114],  # IoU 36 / 164 = 0.22 with gt 1: its best -> low-quality positive if allowed
    ])
    rpn = MaxIoUAssigner(0.7, 0.3, min_pos_iou=0.2).assign(boxes, GT)
    assert rpn.gt_index.tolist() == [0, IGNORED, NEGATIVE, 1]
    strict = MaxIoUAssigner(0.7, 0.3, min_pos_iou=0.3).assign(boxes, GT)
    assert strict.gt_index.tolist() == [0, IGNORED, NEGATIVE, NEGATIVE]
    no_lq = MaxIoUAssigner(0.7, 0.3, match_low_quality=False).assign(boxes, GT)
    assert no_lq.gt_index.tolist() == [0, IGNORED, NEGATIVE, NEGATIVE]
    torch.testing.assert_close(rpn.max_iou, t([1.0, 0.5, 0.0, 36 / 164]))


def test_low_quality_ties_go_to_the_later_ground_truth():
    gt = t([[0, 0, 10, 10], [0, 0, 10, 10]])
    result = MaxIoUAssigner(0.9, 0.1, min_pos_iou=0.3).assign(t([[0, 0, 10, 6]]), gt)
    assert result.gt_index.tolist() == [1]


def test_empty_ground_truth_makes_everything_negative():
    result = MaxIoUAssigner(0.7, 0.3).assign(t([[0, 0, 5, 5], [1, 1, 9, 9]]), torch.zeros(0, 4))
    assert result.gt_index.tolist() == [NEGATIVE, NEGATIVE]
    assert result.negative.all() and not result.positive.any()


def test_empty_boxes():
    result = MaxIoUAssigner(0.7, 0.3).assign(torch.zeros(0, 4), GT)
    assert result.gt_index.shape == (0,) and result.max_iou.shape == (0,)


def test_ignored_regions():
    boxes = t([[52, 52, 58, 58], [0, 0, 10, 10], [70, 70, 90, 90]])
    crowd = t([[50, 50, 60, 60]])
    result = MaxIoUAssigner(0.7, 0.3, ignore_iof_thr=0.5).assign(boxes, GT, crowd)
    assert result.gt_index.tolist() == [IGNORED, 0, NEGATIVE]
    disabled = MaxIoUAssigner(0.7, 0.3, ignore_iof_thr=-1).assign(boxes, GT, crowd)
    assert disabled.gt_index.tolist() == [NEGATIVE, 0, NEGATIVE]
    only_crowd = MaxIoUAssigner(0.7, 0.3).assign(boxes, torch.zeros(0, 4), crowd)
    assert only_crowd.gt_index.tolist() == [IGNORED, NEGATIVE, NEGATIVE]

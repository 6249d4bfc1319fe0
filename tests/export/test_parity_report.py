"""compare_detections / assert_parity: matching, counts and the worst differences in the message."""

from __future__ import annotations

import pytest
import torch

from lightdet.export import ParityError, assert_parity, compare_detections
from lightdet.structures import Detections


def dets(
    boxes: list[list[float]], scores: list[float], labels: list[int], masks: torch.Tensor | None = None
) -> Detections:
    return Detections(
        boxes=torch.tensor(boxes, dtype=torch.float32),
        scores=torch.tensor(scores),
        labels=torch.tensor(labels, dtype=torch.int64),
        masks=masks,
    )


REF = dets([[0, 0, 10, 10], [20, 20, 40, 30], [5, 5, 9, 9]], [0.9, 0.8, 0.1], [0, 1, 0])


def test_identical_and_reordered_detections_match() -> None:
    shuffled = REF[torch.tensor([2, 0, 1])]
    report = compare_detections([REF], [shuffled])
    assert report.matched == report.total == 3 and report.worst_box == 0 and report.worst_score == 0


def test_missing_extra_and_relabelled_detections_count_as_unmatched() -> None:
    assert compare_detections([REF], [REF[:2]]).matched_fraction == pytest.approx(2 / 3)
    relabelled = dets(REF.boxes.tolist(), REF.scores.tolist(), [0, 2, 0])
    assert compare_detections([REF], [relabelled]).matched == 2
    assert compare_detections([Detections.empty()], [Detections.empty()]).matched_fraction == 1.0


def test_mismatch_reports_the_worst_box_and_score_difference() -> None:
    moved = dets([[0, 0, 10, 10.5], [20, 20, 40, 30], [5, 5, 9, 9]], [0.9, 0.8, 0.1003], [0, 1, 0])
    with pytest.raises(
        ParityError,
        match=r"1/3 detections matched .*worst box difference 0\.5 px .*"
        r"label 0.*worst score difference 0\.0003",
    ):
        assert_parity([REF], [moved], what="model.onnx")
    assert_parity([REF], [moved], box_tol=1.0, score_tol=1e-3)


def test_mask_iou_is_pooled_over_matched_pairs() -> None:
    masks = torch.zeros(3, 40, 40, dtype=torch.bool)
    masks[:, 10:20, 10:20] = True
    other = masks.clone()
    other[0, 10, 10:20] = False  # 10 of 300 set pixels differ
    report = compare_detections(
        [dets(REF.boxes.tolist(), REF.scores.tolist(), [0, 1, 0], masks)],
        [dets(REF.boxes.tolist(), REF.scores.tolist(), [0, 1, 0], other)],
    )
    assert report.mask_iou == pytest.approx(290 / 300) and report.worst_mask_iou == pytest.approx(0.9)
    with pytest.raises(ParityError, match="mask IoU 0.9667"):
        assert_parity(
            [dets(REF.boxes.tolist(), REF.scores.tolist(), [0, 1, 0], masks)],
            [dets(REF.boxes.tolist(), REF.scores.tolist(), [0, 1, 0], other)],
        )

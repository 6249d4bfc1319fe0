"""F1 and PR curves, and the confusion matrix, on cases small enough to count by hand."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from lightdet.analysis import compute_analysis, evaluate_results
from lightdet.analysis.curves import Matches, f1_curve, pr_curves


def _gt(boxes: list[tuple[int, list[float]]]) -> dict[str, Any]:
    """One 100x100 image with ``(category_id, xywh)`` objects; categories 1 (a) and 2 (b)."""
    return {
        "images": [{"id": 1, "file_name": "1.jpg", "width": 100, "height": 100}],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        "annotations": [{"id": i + 1, "image_id": 1, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
                        for i, (c, b) in enumerate(boxes)],
    }  # fmt: skip


def _det(cat: int, box: list[float], score: float) -> dict[str, Any]:
    return {"image_id": 1, "category_id": cat, "bbox": box, "score": score}


def test_f1_over_thresholds_counted_by_hand() -> None:
    # scores 0.9 (hit), 0.8 (miss), 0.6 (hit); two objects
    curve = f1_curve(Matches(np.array([0.8, 0.9, 0.6]), np.array([False, True, True]), num_gt=2))
    at = {round(c, 2): f for c, f in zip(curve.confidence, curve.f1)}
    assert at[0.9] == pytest.approx(2 * 1 * 0.5 / 1.5)  # P 1, R 1/2
    assert at[0.8] == pytest.approx(0.5)  # P 1/2, R 1/2
    assert at[0.6] == pytest.approx(0.8)  # P 2/3, R 1
    assert at[0.95] == 0.0
    assert (curve.best_f1, curve.best_threshold) == (pytest.approx(0.8), 0.6)
    assert (curve.precision_at_best, curve.recall_at_best) == (pytest.approx(2 / 3), 1.0)


def test_a_tie_in_scores_is_one_threshold() -> None:
    # keeping the first of two tied boxes alone is no threshold: F1 at 0.7 counts both
    curve = f1_curve(Matches(np.array([0.7, 0.7]), np.array([True, False]), num_gt=1))
    assert curve.best_f1 == pytest.approx(2 / 3) and curve.best_threshold == 0.7


def test_no_detections_or_no_objects_give_no_best_threshold() -> None:
    assert np.isnan(f1_curve(Matches(np.zeros(0), np.zeros(0, dtype=bool), num_gt=3)).best_threshold)
    empty_gt = f1_curve(Matches(np.array([0.5]), np.array([False]), num_gt=0))
    assert np.isnan(empty_gt.best_f1) and np.isnan(empty_gt.recall).all()


def test_pr_curve_of_a_class_without_objects_is_left_out_of_the_mean() -> None:
    precision = np.full((10, 101, 2, 4, 3), -1.0)
    precision[:, :, 0] = 0.5
    curves = pr_curves(precision, np.linspace(0.5, 0.95, 10), np.linspace(0, 1, 101), 0.5)
    assert np.isnan(curves.per_class[1]).all() and np.isnan(curves.ap[1])
    assert np.allclose(curves.overall, 0.5) and curves.ap[0] == 0.5


def test_confusion_matrix_has_background_row_and_column() -> None:
    gt = _gt([(1, [10, 10, 20, 20]), (1, [60, 60, 20, 20]), (2, [10, 60, 20, 20])])
    results = [
        _det(2, [10, 10, 20, 20], 0.9),  # an `a` called `b`
        _det(1, [60, 60, 20, 20], 0.8),  # correct
        _det(1, [80, 5, 10, 10], 0.95),  # on nothing
    ]  # the `b` at (10, 60) is missed; the best-F1 threshold (0.8) keeps all three
    analysis = compute_analysis(evaluate_results(results, gt))
    matrix = np.asarray(analysis.confusion["matrix"])
    assert analysis.confusion["labels"] == ["a", "b", "background"]
    # rows: true a, true b, background; columns: predicted a, predicted b, missed
    assert matrix.tolist() == [[1, 1, 0], [0, 0, 1], [1, 0, 0]]
    assert analysis.images[1] == {"tp": 1, "fp": 2, "fn": 2}

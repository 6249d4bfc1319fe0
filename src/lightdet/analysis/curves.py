"""Precision-recall and F1-versus-confidence curves, computed from one COCOeval run (pure numpy).

PR curves are COCOeval's own interpolated precision at its 101 recall points, so the mean of a class's
curve is exactly its AP at that IoU. F1 curves count true and false positives of the detections scoring
at least each confidence, from COCOeval's per-image matches (crowd matches ignored, at most 100
detections per image), so they agree with the AP's matching.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PRCurves", "F1Curve", "Matches", "pr_curves", "class_matches", "f1_curve", "CONFIDENCE_GRID"]

#: The confidences at which F1 curves are sampled.
CONFIDENCE_GRID = np.linspace(0.0, 1.0, 101)


@dataclass
class PRCurves:
    """Interpolated precision over recall at one IoU threshold (area ``all``, 100 detections per image).

    Attributes:
        iou: the IoU threshold.
        recall: ``[R]`` the recall points (COCO's 0, 0.01, ..., 1).
        per_class: ``[K, R]`` precision per class; NaN rows for classes without ground truth.
        overall: ``[R]`` the mean over classes with ground truth (its mean is the AP at ``iou``).
        ap: ``[K]`` each class's AP at ``iou`` (NaN without ground truth).
    """

    iou: float
    recall: np.ndarray
    per_class: np.ndarray
    overall: np.ndarray
    ap: np.ndarray


def _iou_index(iou_thrs: Sequence[float], iou: float) -> int:
    found = np.flatnonzero(np.isclose(np.asarray(iou_thrs, dtype=np.float64), iou))
    if not len(found):
        raise ValueError(f"IoU {iou} is not among COCOeval's thresholds {list(iou_thrs)}")
    return int(found[0])


def pr_curves(precision: np.ndarray, iou_thrs: Sequence[float], rec_thrs: Sequence[float], iou: float) -> PRCurves:
    """Curves at ``iou`` from COCOeval's ``precision`` array ``[T, R, K, A, M]`` (area 0, last max-dets)."""
    p = np.asarray(precision, dtype=np.float64)[_iou_index(iou_thrs, iou), :, :, 0, -1].T  # [K, R]
    p = np.where(p < 0, np.nan, p)
    has_gt = ~np.isnan(p).all(axis=1)
    overall = np.nanmean(p[has_gt], axis=0) if has_gt.any() else np.full(p.shape[1], np.nan)
    ap = np.array([row.mean() if ok else np.nan for row, ok in zip(p, has_gt)])
    return PRCurves(iou, np.asarray(rec_thrs, dtype=np.float64), p, overall, ap)


@dataclass
class Matches:
    """One class's (or all classes') detections at one IoU: ``scores [D]``, ``tp bool [D]``, ``num_gt``."""

    scores: np.ndarray
    tp: np.ndarray
    num_gt: int

    @staticmethod
    def pooled(parts: Iterable[Matches]) -> Matches:
        parts = list(parts)
        return Matches(
            np.concatenate([p.scores for p in parts]) if parts else np.zeros(0),
            np.concatenate([p.tp for p in parts]) if parts else np.zeros(0, dtype=bool),
            sum(p.num_gt for p in parts),
        )


def class_matches(
    eval_imgs: Iterable[Mapping[str, Any] | None], cat_ids: Sequence[int], all_area: Sequence[float], iou_index: int
) -> dict[int, Matches]:
    """Per category, its non-ignored detections' scores and whether each matched, from COCOeval's
    ``eval_imgs`` entries of the area range ``all_area``, at the IoU threshold ``iou_index``."""
    scores: dict[int, list[np.ndarray]] = {c: [] for c in cat_ids}
    tps: dict[int, list[np.ndarray]] = {c: [] for c in cat_ids}
    num_gt = dict.fromkeys(cat_ids, 0)
    for entry in eval_imgs:
        if entry is None or list(entry["aRng"]) != list(all_area) or entry["category_id"] not in num_gt:
            continue
        cat = entry["category_id"]
        keep = ~np.asarray(entry["dtIgnore"][iou_index], dtype=bool).reshape(-1)
        scores[cat].append(np.asarray(entry["dtScores"], dtype=np.float64)[keep])
        tps[cat].append(np.asarray(entry["dtMatches"][iou_index], dtype=np.float64).reshape(-1)[keep] > 0)
        num_gt[cat] += int((~np.asarray(entry["gtIgnore"], dtype=bool)).sum())
    return {
        c: Matches(
            np.concatenate(scores[c]) if scores[c] else np.zeros(0),
            np.concatenate(tps[c]) if tps[c] else np.zeros(0, dtype=bool),
            num_gt[c],
        )
        for c in cat_ids
    }


@dataclass
class F1Curve:
    """Precision, recall and F1 of the detections scoring at least each confidence.

    Attributes:
        confidence: ``[C]`` the thresholds (:data:`CONFIDENCE_GRID`).
        precision, recall, f1: ``[C]``; precision is NaN where no detection is left.
        best_f1: the highest F1 over every threshold a detection's score defines.
        best_threshold: the score giving it (NaN without detections or ground truth).
        precision_at_best, recall_at_best: at ``best_threshold``.
    """

    confidence: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray
    best_f1: float
    best_threshold: float
    precision_at_best: float
    recall_at_best: float


def _counts(matches: Matches) -> tuple[np.ndarray, np.ndarray]:
    """Scores by decreasing value and the cumulative true positives ``[D]`` down that order."""
    order = np.argsort(-matches.scores, kind="mergesort")
    return matches.scores[order], np.cumsum(matches.tp[order])


def _at_grid(scores: np.ndarray, tp_cum: np.ndarray, num_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall of the detections scoring >= each :data:`CONFIDENCE_GRID` value."""
    kept = np.searchsorted(-scores, -CONFIDENCE_GRID, side="right")  # detections with score >= c
    tp = np.where(kept > 0, tp_cum[np.maximum(kept - 1, 0)] if len(tp_cum) else 0, 0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(kept > 0, tp / np.maximum(kept, 1), np.nan)
    recall = tp / num_gt if num_gt else np.full(len(CONFIDENCE_GRID), np.nan)
    return precision, recall


def f1_curve(matches: Matches) -> F1Curve:
    """The F1-versus-confidence curve of ``matches`` and its best threshold."""
    scores, tp_cum = _counts(matches)
    precision, recall = _at_grid(scores, tp_cum, matches.num_gt)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    best = (float("nan"),) * 4
    if len(scores) and matches.num_gt:
        last_of_tie = np.r_[scores[1:] != scores[:-1], True]  # a threshold keeps a whole tie group
        kept = np.arange(1, len(scores) + 1)
        f1_at = np.where(last_of_tie, 2 * tp_cum / (kept + matches.num_gt), -1.0)
        i = int(np.argmax(f1_at))
        best = (float(f1_at[i]), float(scores[i]), float(tp_cum[i] / kept[i]), float(tp_cum[i] / matches.num_gt))
    return F1Curve(CONFIDENCE_GRID, precision, recall, f1, *best)

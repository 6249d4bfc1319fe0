"""Every number the analysis reports, computed from one :class:`~lightdet.analysis.coco.Evaluated` run.

:func:`compute_analysis` gathers them in an :class:`Analysis` (arrays kept for the plots);
:meth:`Analysis.to_json` is the ``analysis.json`` written beside the plots. Metric names follow
lightdet's evaluator (``mAP``, ``mAP_50``, ... as in ``val/bbox_mAP``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lightdet.analysis.coco import Evaluated
from lightdet.analysis.curves import F1Curve, Matches, PRCurves, class_matches, f1_curve, pr_curves

__all__ = ["Analysis", "ALL_CLASSES", "COCO_STAT_NAMES", "SIZE_NAMES", "TIDE_ERRORS", "compute_analysis"]

#: COCOeval's 12 statistics, in ``stats`` order (the names of lightdet's evaluator).
COCO_STAT_NAMES: tuple[str, ...] = (
    "mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l",
    "AR_1", "AR_10", "AR_100", "AR_s", "AR_m", "AR_l",
)  # fmt: skip
#: The key of the all-classes F1 curve (detections of every class pooled).
ALL_CLASSES = "all classes"
#: COCO's area ranges, after ``all``.
SIZE_NAMES: tuple[str, ...] = ("small", "medium", "large")
#: TIDE's error types (hotcoco's keys) and what each means.
TIDE_ERRORS: dict[str, str] = {
    "Cls": "classification: right place, wrong class",
    "Loc": "localisation: right class, box overlap too low",
    "Both": "both: wrong class and poor overlap",
    "Dupe": "duplicate: a second box on an object already found",
    "Bkg": "background: a box on nothing",
    "Miss": "missed: an object no box found",
}


def _finite(value: float) -> float | None:
    """JSON-safe: NaN and COCO's -1 ("no ground truth") become None."""
    return None if value is None or not math.isfinite(value) or value == -1 else float(value)


@dataclass
class Analysis:
    """The numbers of one results file against its ground truth (see :func:`compute_analysis`).

    Attributes:
        class_names: evaluated classes, in category-id order; ``cat_ids`` their ids.
        stats: the 12 COCO statistics by name (-1 where COCO has nothing to measure).
        per_class: per class name: ``AP``, ``AP_50``, ``AP_75``, ``num_gt``, ``num_detections``.
        pr: PR curves by IoU (0.5 and 0.75).
        f1: F1-versus-confidence per class name, and :data:`ALL_CLASSES`.
        confusion: hotcoco's confusion matrix at IoU 0.5 and the best F1 threshold (rows: ground truth,
            last row background; columns: predictions, last column missed).
        tide: hotcoco's TIDE errors (``delta_ap`` and ``counts`` per error type, ``ap_base``).
        sizes: per area range: ``AP``, ``AP_50``, ``AR_100``, ``num_gt``, ``area`` (its range in pixels²).
        calibration: hotcoco's reliability bins, ``ece`` and ``mce`` at IoU 0.5.
        images: per evaluated image at IoU 0.5 and the best threshold: ``tp``, ``fp``, ``fn``.
        box_status: ``{"dt": {result id: "tp" | "fp"}, "gt": {annotation id: "matched" | "fn"}}`` there.
        num_images, num_detections, num_gt: what was evaluated.
    """

    class_names: list[str]
    cat_ids: list[int]
    stats: dict[str, float]
    per_class: dict[str, dict[str, float | int | None]]
    pr: dict[float, PRCurves]
    f1: dict[str, F1Curve]
    confusion: dict[str, Any]
    tide: dict[str, Any]
    sizes: dict[str, dict[str, Any]]
    calibration: dict[str, Any]
    images: dict[int, dict[str, int]]
    box_status: dict[str, dict[int, str]]
    num_images: int
    num_detections: int
    num_gt: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def best_threshold(self) -> float:
        """The score threshold with the best F1 over all classes (0.0 without detections)."""
        value = self.f1[ALL_CLASSES].best_threshold
        return value if math.isfinite(value) else 0.0

    def to_json(self) -> dict[str, Any]:
        """The numbers as plain JSON values (NaN and -1 written as null)."""
        return {
            "num_images": self.num_images, "num_detections": self.num_detections, "num_gt": self.num_gt,
            "stats": {k: _finite(v) for k, v in self.stats.items()},
            "per_class": self.per_class,
            "pr_curves": {f"iou_{iou:.2f}": _pr_json(c, self.class_names) for iou, c in self.pr.items()},
            "f1": {name: _f1_json(c) for name, c in self.f1.items()},
            "confusion_matrix": self.confusion,
            "tide": self.tide,
            "ap_by_size": self.sizes,
            "calibration": self.calibration,
            **self.extra,
        }  # fmt: skip


def _pr_json(curves: PRCurves, names: list[str]) -> dict[str, Any]:
    return {
        "recall": curves.recall.round(4).tolist(),
        "overall": [_finite(v) for v in curves.overall.round(6)],
        "per_class": {n: [_finite(v) for v in row.round(6)] for n, row in zip(names, curves.per_class)},
        "ap": {n: _finite(v) for n, v in zip(names, curves.ap)},
    }


def _f1_json(curve: F1Curve) -> dict[str, Any]:
    return {
        "best_f1": _finite(curve.best_f1), "best_threshold": _finite(curve.best_threshold),
        "precision_at_best": _finite(curve.precision_at_best), "recall_at_best": _finite(curve.recall_at_best),
        "confidence": curve.confidence.round(4).tolist(), "f1": curve.f1.round(6).tolist(),
    }  # fmt: skip


def _per_class(ev: Evaluated, pr: dict[float, PRCurves], matches: dict[int, Matches]) -> dict[str, dict[str, Any]]:
    """AP (0.5:0.95, 0.5, 0.75), ground-truth and detection counts per class name."""
    precision = np.asarray(ev.cocoeval.eval["precision"], dtype=np.float64)[:, :, :, 0, -1]  # [T, R, K]
    out: dict[str, dict[str, Any]] = {}
    for k, (name, cat) in enumerate(zip(ev.class_names, ev.cat_ids)):
        valid = precision[:, :, k][precision[:, :, k] > -1]
        out[name] = {
            "AP": _finite(float(valid.mean())) if valid.size else None,
            "AP_50": _finite(pr[0.5].ap[k]), "AP_75": _finite(pr[0.75].ap[k]),
            "num_gt": matches[cat].num_gt, "num_detections": int(len(matches[cat].scores)),
        }  # fmt: skip
    return out


def _sizes(ev: Evaluated, stats: np.ndarray) -> dict[str, dict[str, Any]]:
    """AP, AP50, AR@100 and the number of (non-crowd) ground-truth boxes per COCO area range."""
    params = ev.cocoeval.params
    precision = np.asarray(ev.cocoeval.eval["precision"], dtype=np.float64)[0, :, :, :, -1]  # [R, K, A] at 0.5
    images, cats = set(ev.image_ids), set(ev.cat_ids)
    areas = np.array([
        float(a.get("area", a["bbox"][2] * a["bbox"][3])) for a in ev.gt_dict["annotations"]
        if a["image_id"] in images and a["category_id"] in cats and not a.get("iscrowd", 0)
    ])  # fmt: skip
    out = {}
    for a, name in enumerate(SIZE_NAMES, start=1):
        low, high = params.area_rng[a]
        p50 = precision[:, :, a]
        out[name] = {
            "AP": _finite(stats[2 + a]), "AP_50": _finite(float(p50[p50 > -1].mean())) if (p50 > -1).any() else None,
            "AR_100": _finite(stats[8 + a]), "num_gt": int(((areas >= low) & (areas < high)).sum()),
            "area": [low, high],
        }  # fmt: skip
    return out


def _confusion(ev: Evaluated, min_score: float) -> dict[str, Any]:
    raw = ev.cocoeval.confusion_matrix(iou_thr=0.5, min_score=min_score)
    return {
        "matrix": np.asarray(raw["matrix"]).astype(int).tolist(),
        "labels": [*ev.class_names, "background"],
        "iou_thr": 0.5,
        "min_score": min_score,
        "rows": "ground truth (last: background, i.e. a box on no object)",
        "columns": "prediction (last: background, i.e. the object was missed)",
    }


def _tide(ev: Evaluated) -> dict[str, Any]:
    raw = ev.cocoeval.tide_errors(pos_thr=0.5, bg_thr=0.1)
    return {
        "delta_ap": {k: float(raw["delta_ap"].get(k, 0.0)) for k in TIDE_ERRORS},
        "counts": {k: int(raw["counts"].get(k, 0)) for k in TIDE_ERRORS},
        "fp_fn_delta_ap": {k: float(raw["delta_ap"].get(k, 0.0)) for k in ("FP", "FN")},
        "ap_base": float(raw["ap_base"]), "pos_thr": 0.5, "bg_thr": 0.1,
        "meaning": TIDE_ERRORS,
    }  # fmt: skip


def _calibration(ev: Evaluated) -> dict[str, Any]:
    raw = ev.cocoeval.calibration(n_bins=10, iou_threshold=0.5)
    return {
        "ece": _finite(raw["ece"]), "mce": _finite(raw["mce"]), "iou_thr": 0.5,
        "bins": [{k: _finite(v) if isinstance(v, float) else v for k, v in b.items()} for b in raw["bins"]],
    }  # fmt: skip


def _entry_status(entry: dict[str, Any], score_thr: float) -> tuple[dict[int, str], dict[int, str]]:
    """One ``eval_imgs`` entry at IoU 0.5: its detections scoring >= ``score_thr`` as ``tp``/``fp`` and its
    ground truth as ``matched``/``fn`` (ignored boxes left out). Matching is greedy by score, so the
    matches among the kept detections are those COCOeval made with all of them."""
    score_of = dict(zip(entry["dtIds"], entry["dtScores"]))
    dt = {
        int(d): "tp" if m > 0 else "fp"
        for d, m, ignored in zip(entry["dtIds"], entry["dtMatches"][0], entry["dtIgnore"][0])
        if not ignored and score_of[d] >= score_thr
    }
    gt = {
        int(g): "matched" if m > 0 and score_of.get(int(m), -1.0) >= score_thr else "fn"
        for g, m, ignored in zip(entry["gtIds"], entry["gtMatches"][0], entry["gtIgnore"])
        if not ignored
    }
    return dt, gt


def _images(ev: Evaluated, score_thr: float) -> tuple[dict[int, dict[str, int]], dict[str, dict[int, str]]]:
    """Per image its ``tp``, ``fp``, ``fn`` at ``score_thr`` and IoU 0.5, and every box's status: detections
    ``tp``/``fp`` by result id (those scoring below ``score_thr`` left out), ground truth ``matched``/``fn``."""
    all_area = list(ev.cocoeval.params.area_rng[0])
    per_image = {i: {"tp": 0, "fp": 0, "fn": 0} for i in ev.image_ids}
    status: dict[str, dict[int, str]] = {"dt": {}, "gt": {}}
    for entry in ev.cocoeval.eval_imgs:
        if entry is None or list(entry["aRng"]) != all_area:
            continue
        dt, gt = _entry_status(entry, score_thr)
        counts = per_image[int(entry["image_id"])]
        for kind in [*dt.values(), *(v for v in gt.values() if v == "fn")]:
            counts[kind] += 1
        status["dt"].update(dt)
        status["gt"].update(gt)
    return per_image, status


def compute_analysis(ev: Evaluated) -> Analysis:
    """PR and F1 curves, per-class and per-size AP, confusion matrix, TIDE errors, calibration and
    per-image errors of one evaluation."""
    params = ev.cocoeval.params
    stats = np.asarray(ev.cocoeval.stats, dtype=np.float64)
    precision = np.asarray(ev.cocoeval.eval["precision"], dtype=np.float64)
    pr = {iou: pr_curves(precision, params.iou_thrs, params.rec_thrs, iou) for iou in (0.5, 0.75)}
    matches = class_matches(ev.cocoeval.eval_imgs, ev.cat_ids, params.area_rng[0], iou_index=0)
    f1 = {name: f1_curve(matches[c]) for name, c in zip(ev.class_names, ev.cat_ids)}
    f1[ALL_CLASSES] = f1_curve(Matches.pooled(matches.values()))
    best = f1[ALL_CLASSES].best_threshold
    best = best if math.isfinite(best) else 0.0
    per_class = _per_class(ev, pr, matches)
    images, box_status = _images(ev, best)
    for name, stats_of in per_class.items():
        stats_of.update(best_f1=_finite(f1[name].best_f1), best_threshold=_finite(f1[name].best_threshold))
    return Analysis(
        class_names=ev.class_names, cat_ids=ev.cat_ids,
        stats=dict(zip(COCO_STAT_NAMES, stats.tolist())), per_class=per_class, pr=pr, f1=f1,
        confusion=_confusion(ev, best), tide=_tide(ev), sizes=_sizes(ev, stats), calibration=_calibration(ev),
        images=images, box_status=box_status, num_images=len(ev.image_ids), num_detections=len(ev.results),
        num_gt=sum(m.num_gt for m in matches.values()),
    )  # fmt: skip

"""Analysis of detection results: PR and F1 curves, confusion matrix, TIDE errors, AP by size and class,
calibration and the worst images, written as PNGs, ``report.html`` and ``analysis.json``.

It reads a COCO results file and its ground truth (never a model or a dataset)::

    from lightdet.analysis import analyze
    report = analyze("results.json", "annotations/val.json", "analysis/", img_dir="images/val")
    report.html, report.analysis.stats["mAP"]

``lightdet-analyze`` is its command line; the run report (:class:`lightdet.engine.report.RunReport`) calls
it on the last validation of a training run.
"""

from lightdet.analysis.coco import Evaluated, evaluate_results, read_ground_truth, read_results
from lightdet.analysis.numbers import ALL_CLASSES, COCO_STAT_NAMES, Analysis, compute_analysis
from lightdet.analysis.report import FIGURES, AnalysisReport, analyze

__all__ = [
    "ALL_CLASSES",
    "COCO_STAT_NAMES",
    "FIGURES",
    "Analysis",
    "AnalysisReport",
    "Evaluated",
    "analyze",
    "compute_analysis",
    "evaluate_results",
    "read_ground_truth",
    "read_results",
]

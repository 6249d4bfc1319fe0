"""Evaluators: COCO metrics over the images a run processed, gathered across ranks."""

from lightdet.evaluation.coco import BACKENDS, IOU_TYPES, CocoEvaluator
from lightdet.evaluation.distributed import all_gather_results, is_rank_zero, merge_rank_results
from lightdet.evaluation.result import COCO_STAT_NAMES, EvalResult
from lightdet.evaluation.voc import VocEvalResult, VocEvaluator

__all__ = [
    "BACKENDS",
    "COCO_STAT_NAMES",
    "IOU_TYPES",
    "CocoEvaluator",
    "EvalResult",
    "VocEvalResult",
    "VocEvaluator",
    "all_gather_results",
    "is_rank_zero",
    "merge_rank_results",
]

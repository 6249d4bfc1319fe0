"""Reading a COCO results file and its ground truth, and running hotcoco's COCOeval on them once.

Everything the analysis reports is read from this one evaluation: the 12 COCO statistics and the
precision array (pycocotools-compatible), the per-detection matches, and hotcoco's diagnostics (TIDE
errors, confusion matrix, calibration, per-image true/false positives).
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

from hotcoco import COCO, COCOeval

__all__ = ["Evaluated", "ResultsInput", "GroundTruthInput", "evaluate_results", "read_results", "read_ground_truth"]

ResultsInput = str | PathLike | Sequence[Mapping[str, Any]]
"""COCO detection results: a JSON file path or a list of ``{image_id, category_id, bbox (xywh), score}``
(what ``lightdet-test out=...`` writes)."""

GroundTruthInput = str | PathLike | Mapping[str, Any]
"""COCO ground truth: a JSON file path or a COCO dict (``images``, ``annotations``, ``categories``)."""


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r}: no such file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{what} {path}: not valid JSON ({e})") from None


def read_results(results: ResultsInput) -> list[dict[str, Any]]:
    """The result records of ``results`` (see :data:`ResultsInput`).

    Raises:
        ValueError: for a COCO dataset dict (e.g. ``lightdet-infer``'s ``predictions.json``, whose image ids
            are not the ground truth's) or records without ``image_id``/``category_id``/``bbox``/``score``.
    """
    data = _read_json(Path(results), "results file") if isinstance(results, (str, PathLike)) else results
    if isinstance(data, Mapping):
        raise ValueError(
            "results: expected a list of detections ({image_id, category_id, bbox, score}, as written by "
            "`lightdet-test ckpt=... out=results.json`), got a dict with keys "
            f"{sorted(data)[:6]} (lightdet-infer's predictions.json numbers images 1..N, not by the ground truth)"
        )
    records = [dict(r) for r in data]
    missing = [k for k in ("image_id", "category_id", "bbox", "score") if records and k not in records[0]]
    if missing:
        raise ValueError(f"results: the detections lack {missing} (COCO results format)")
    return records


def read_ground_truth(ground_truth: GroundTruthInput) -> dict[str, Any]:
    """The COCO dict of ``ground_truth`` (see :data:`GroundTruthInput`)."""
    if isinstance(ground_truth, (str, PathLike)):
        data = _read_json(Path(ground_truth), "ground truth")
    else:
        data = dict(ground_truth)
    missing = [k for k in ("images", "annotations", "categories") if k not in data]
    if missing:
        raise ValueError(f"ground truth: not a COCO annotation file (missing {missing})")
    return data


@dataclass
class Evaluated:
    """One COCOeval run (bbox) over chosen images and categories, evaluated and accumulated.

    Attributes:
        gt, dt: hotcoco ``COCO`` objects of the ground truth and the results.
        cocoeval: the hotcoco ``COCOeval`` after ``evaluate``, ``accumulate`` and ``summarize``.
        cat_ids: the evaluated categories, sorted (the ``K`` axis of every per-class array).
        class_names: their names, in ``cat_ids`` order.
        image_ids: the evaluated images, sorted.
        results: the result records (each with the ``id`` the results ``COCO`` gave it).
        gt_dict: the ground truth as read (``images``, ``annotations``, ``categories``).
    """

    gt: Any
    dt: Any
    cocoeval: Any
    cat_ids: list[int]
    class_names: list[str]
    image_ids: list[int]
    results: list[dict[str, Any]]
    gt_dict: dict[str, Any]


def _choose(available: Sequence[int], wanted: Sequence[int] | None, what: str) -> list[int]:
    """``wanted`` (checked against ``available``) or everything, sorted."""
    if wanted is None:
        return sorted(available)
    unknown = sorted(set(wanted) - set(available))
    if unknown:
        raise ValueError(f"{what} {unknown[:10]} are not in the ground truth")
    return sorted(set(wanted))


def evaluate_results(
    results: ResultsInput,
    ground_truth: GroundTruthInput,
    *,
    cat_ids: Sequence[int] | None = None,
    image_ids: Sequence[int] | None = None,
) -> Evaluated:
    """Runs COCOeval (bbox) with hotcoco on ``results`` against ``ground_truth``.

    Args:
        cat_ids: evaluate these categories only (a run trained on a subset of the file's classes); None: all.
        image_ids: evaluate these images only (a partial validation); None: every image of the file.
    """
    records = read_results(results)
    gt_dict = read_ground_truth(ground_truth)
    gt = COCO(gt_dict)
    cats = _choose([int(c["id"]) for c in gt_dict["categories"]], cat_ids, "category ids")
    images = _choose([int(i["id"]) for i in gt_dict["images"]], image_ids, "image ids")
    records = [r for r in records if int(r["category_id"]) in set(cats)]
    dt = gt.load_res(records)
    cocoeval = COCOeval(gt, dt, "bbox")
    cocoeval.params.cat_ids = cats
    cocoeval.params.img_ids = images
    cocoeval.evaluate()
    cocoeval.accumulate()
    with contextlib.redirect_stdout(io.StringIO()):  # the 12-line table; the report shows the numbers
        cocoeval.summarize()
    names = {int(c["id"]): str(c["name"]) for c in gt_dict["categories"]}
    results_with_ids = [dict(a) for a in dt.anns.values()]
    return Evaluated(gt, dt, cocoeval, cats, [names[c] for c in cats], images, results_with_ids, gt_dict)

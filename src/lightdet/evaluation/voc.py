"""Pascal VOC mAP: per-class AP at IoU thresholds (0.5 by default), area or 11-point interpolation.

Ground truth is COCO (see :data:`~lightdet.evaluation.ground_truth.GroundTruth`); a VOC split list or
a middle-format file reaches the evaluator through its dataset's COCO reader
(``lightdet.data.CocoGroundTruth``). Boxes are read as the datasets read them (clipped to the image,
zero-size boxes dropped). Crowd boxes (VOC ``difficult``, middle ``bboxes_ignore``) are neither
required nor penalised: a detection matched to one counts neither as a true nor as a false positive. IoU uses continuous
coordinates (no "+1"), like MMDetection's ``eval_map`` since 2.0. The mean is over the classes with
ground truth in the evaluated images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from io import StringIO
from typing import Literal

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torchvision.ops import box_iou

from lightdet.categories import ClassesSpec, match_categories
from lightdet.evaluation.distributed import PerImageResults
from lightdet.evaluation.ground_truth import (
    GroundTruth,
    coco_box_arrays,
    load_coco_ground_truth,
)
from lightdet.evaluation.result import EvalResult
from lightdet.structures import Detections, ImageMeta

__all__ = ["VocEvaluator", "VocEvalResult", "average_precision", "match_detections"]

ApMode = Literal["area", "11points"]


def average_precision(recall: np.ndarray, precision: np.ndarray, mode: ApMode = "area") -> float:
    """AP of one class from its precision/recall curve (detections sorted by decreasing score).

    Args:
        recall, precision: ``float [D]`` cumulative values after each detection.
        mode: ``"area"`` (VOC 2010+: area under the monotone precision envelope) or ``"11points"``
            (VOC 2007: mean of the maximum precision at recall >= 0, 0.1, ..., 1).
    """
    if mode == "11points":
        return float(np.mean([precision[recall >= t].max() if (recall >= t).any() else 0.0
                              for t in np.linspace(0, 1, 11)]))
    if mode != "area":
        raise ValueError(f"average_precision: mode must be 'area' or '11points', got {mode!r}")
    r = np.concatenate(([0.0], recall, [1.0]))
    p = np.concatenate(([0.0], precision, [0.0]))
    p = np.maximum.accumulate(p[::-1])[::-1]  # precision envelope
    steps = np.flatnonzero(r[1:] != r[:-1])
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def match_detections(
    det_boxes: torch.Tensor, gt_boxes: torch.Tensor, gt_ignore: torch.Tensor, iou_thr: float
) -> np.ndarray:
    """Greedy VOC matching of one image's detections of one class, in the given (score) order.

    Args:
        det_boxes: ``[D, 4]`` xyxy sorted by decreasing score. gt_boxes: ``[G, 4]`` xyxy.
        gt_ignore: ``bool [G]`` difficult boxes. iou_thr: the IoU a match needs.

    Returns:
        ``int8 [D]``: 1 true positive, 0 false positive, -1 ignored (best match is a difficult box).
    """
    out = np.zeros(len(det_boxes), dtype=np.int8)
    if len(det_boxes) == 0 or len(gt_boxes) == 0:
        return out
    iou = box_iou(det_boxes.double(), gt_boxes.double()).numpy()  # [D, G]
    best, best_iou = iou.argmax(axis=1), iou.max(axis=1)
    taken = np.zeros(len(gt_boxes), dtype=bool)
    ignore = gt_ignore.numpy()
    for d in range(len(det_boxes)):
        g = best[d]
        if best_iou[d] < iou_thr:
            continue
        if ignore[g]:
            out[d] = -1
        elif not taken[g]:
            out[d], taken[g] = 1, True
    return out


def _nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    """Mean over ``axis`` ignoring NaN; NaN (without a warning) where every value is NaN."""
    valid = ~np.isnan(values)
    total = np.where(valid, values, 0.0).sum(axis=axis)
    count = valid.sum(axis=axis)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


@dataclass
class VocEvalResult(EvalResult):
    """An :class:`EvalResult` whose tables show VOC's AP per IoU threshold instead of COCO's 12 statistics."""

    def render(self, width: int = 120) -> str:
        buffer = StringIO()
        console = Console(file=buffer, width=width, color_system=None, force_terminal=False)
        table = Table(title="VOC metrics")
        table.add_column("metric")
        table.add_column("value", justify="right")
        for name, value in self.metrics.items():
            table.add_row(name, "nan" if math.isnan(value) else f"{value:.3f}")
        console.print(table)
        if any(self.per_class_by_type.values()):
            console.print(self.per_class_table(title="Per-class AP (mean over the IoU thresholds)"))
        return buffer.getvalue()


class VocEvaluator(PerImageResults):
    """Accumulates detections image by image; computes VOC AP per class and their mean.

    Args:
        ann_file: the ground truth: a COCO json path, a COCO dict, or a callable returning one (read on
            first use), see :data:`~lightdet.evaluation.ground_truth.GroundTruth`.
        classes: the configured classes (label ``i`` is the category named ``classes[i]``); None: every
            category of the file, by id.
        iou_thrs: IoU thresholds; ``bbox_mAP`` is the mean over them, ``bbox_AP<100*t>`` each one.
        mode: ``"area"`` or ``"11points"`` (VOC 2007's metric), see :func:`average_precision`.

    Metrics (``compute().metrics``): ``bbox_mAP`` and ``bbox_AP50`` (etc. per threshold). The
    interface (``process`` / ``sync`` / ``compute`` / ``reset``) is :class:`CocoEvaluator`'s.
    """

    def __init__(
        self,
        ann_file: GroundTruth,
        classes: ClassesSpec | None = None,
        *,
        iou_thrs: Sequence[float] = (0.5,),
        mode: ApMode = "area",
    ) -> None:
        if mode not in ("area", "11points"):
            raise ValueError(f"VocEvaluator: mode must be 'area' or '11points', got {mode!r}")
        if not iou_thrs or any(not 0 < t <= 1 for t in iou_thrs):
            raise ValueError(f"VocEvaluator: iou_thrs must be non-empty values in (0, 1], got {list(iou_thrs)}")
        self.ann_file, self.classes = ann_file, classes
        self.iou_thrs, self.mode = [float(t) for t in iou_thrs], mode
        self._gt: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None
        self._class_names: list[str] = []
        self.reset()

    def _ground_truth(self) -> dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """``{image_id: (boxes [G, 4], labels [G], ignore [G])}``, read once."""
        if self._gt is None:
            coco = load_coco_ground_truth(self.ann_file, "VocEvaluator")
            self._class_names, cat_ids = match_categories(self.classes, coco["categories"], source=self.source)
            arrays = coco_box_arrays(coco, cat_ids, self.source)
            self._gt = {
                i: (torch.from_numpy(boxes), torch.from_numpy(labels), torch.from_numpy(ignore))
                for i, (boxes, labels, ignore) in arrays.items()
            }
        return self._gt

    def process(self, detections: Sequence[Detections], metas: Sequence[ImageMeta]) -> None:
        """Stores one batch: per image, boxes ``[N, 4]`` xyxy in original pixels, scores, labels ``0..K-1``."""
        if len(detections) != len(metas):
            raise ValueError(f"process() got {len(detections)} detections for {len(metas)} image metas")
        gt, k = self._ground_truth(), len(self._class_names)
        for det, meta in zip(detections, metas):
            if int(meta.image_id) not in gt:
                raise ValueError(f"{self.source}: image_id {meta.image_id} ({meta.file_name}) is not in the file")
            if len(det) and (int(det.labels.min()) < 0 or int(det.labels.max()) >= k):
                raise ValueError(f"image_id {meta.image_id}: detection labels {det.labels.unique().tolist()} "
                                 f"outside 0..{k - 1} ({k} classes)")
            det = det.to("cpu")
            self._image_ids.append(int(meta.image_id))
            self._results.append([{"boxes": det.boxes.float(), "scores": det.scores.float(), "labels": det.labels}])

    def compute(self) -> VocEvalResult:
        """VOC metrics over the processed images (each counted once)."""
        image_ids, per_image = self.merged()
        if not image_ids:
            raise RuntimeError(f"VocEvaluator({self.source}): no images were processed before compute()")
        ap = np.array([[self._class_ap(c, t, image_ids, per_image) for c in range(len(self._class_names))]
                       for t in self.iou_thrs])  # [T, K], NaN for classes without ground truth
        per_thr = _nanmean(ap, axis=1)  # [T]
        per_class = _nanmean(ap, axis=0)  # [K]
        metrics = {"bbox_mAP": float(_nanmean(per_thr[None], axis=1)[0])}
        metrics.update({f"bbox_AP{round(t * 100)}": float(v) for t, v in zip(self.iou_thrs, per_thr)})
        return VocEvalResult(
            metrics=metrics,
            per_class_by_type={"bbox": {n: float(v) for n, v in zip(self._class_names, per_class)}},
            num_images=len(image_ids),
        )

    def _class_ap(self, label: int, iou_thr: float, image_ids: list[int], per_image: list[list[dict]]) -> float:
        """AP of class ``label`` over the given images; NaN when it has no non-ignored ground truth."""
        gt = self._ground_truth()
        scores, flags, num_pos = [], [], 0
        for image_id, (res,) in zip(image_ids, per_image):
            gt_boxes, gt_labels, gt_ignore = gt[image_id]
            g = gt_labels == label
            num_pos += int((g & ~gt_ignore).sum())
            d = res["labels"] == label
            order = torch.argsort(res["scores"][d], descending=True, stable=True)
            scores.append(res["scores"][d][order].numpy())
            flags.append(match_detections(res["boxes"][d][order], gt_boxes[g], gt_ignore[g], iou_thr))
        if num_pos == 0:
            return float("nan")
        score, flag = np.concatenate(scores), np.concatenate(flags)
        flag = flag[np.argsort(-score, kind="stable")]
        flag = flag[flag >= 0]
        tp, fp = np.cumsum(flag == 1), np.cumsum(flag == 0)
        recall = tp / num_pos
        precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        return average_precision(recall, precision, self.mode)

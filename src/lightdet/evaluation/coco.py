"""COCO evaluation (COCOeval's 12 statistics and per-class AP) of the images actually processed.

The evaluator receives :class:`~lightdet.structures.Detections` with labels ``0..K-1`` for the K
configured classes and maps them back to the annotation file's category ids **by name**
(:func:`lightdet.categories.match_categories`, as the datasets map them forward), so a class subset or
a reordered class list is evaluated against the right categories.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pycocotools.mask as mask_utils
import torch

from lightdet.categories import ClassesSpec, match_categories
from lightdet.evaluation.distributed import PerImageResults, is_rank_zero
from lightdet.evaluation.ground_truth import GroundTruth, load_coco_ground_truth
from lightdet.evaluation.result import COCO_STAT_NAMES, EvalResult
from lightdet.structures import Detections, ImageMeta, xyxy_to_xywh

__all__ = ["CocoEvaluator", "IOU_TYPES", "BACKENDS"]

log = logging.getLogger(__name__)

IouType = Literal["bbox", "segm"]
Backend = Literal["faster_coco_eval", "pycocotools"]
IOU_TYPES: tuple[str, ...] = ("bbox", "segm")
BACKENDS: tuple[str, ...] = ("faster_coco_eval", "pycocotools")

# The key each IoU type's results must not carry: COCO's loadRes takes a result's area from its box when
# one is present, which would put mask results in the wrong small/medium/large bucket.
_DROP_FOR_TYPE = {"bbox": "segmentation", "segm": "bbox"}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silences pycocotools' progress prints (it writes to stdout unconditionally)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _encode_masks(masks: torch.Tensor | None, meta: ImageMeta) -> list[dict[str, Any]]:
    """``bool/uint8 [N, H, W]`` masks at the original size -> N compressed RLEs (JSON-ready)."""
    if masks is None:
        raise ValueError(f"image_id {meta.image_id}: segm evaluation needs Detections.masks, got None")
    if tuple(masks.shape[-2:]) != tuple(meta.ori_size):
        raise ValueError(
            f"image_id {meta.image_id}: masks are {tuple(masks.shape[-2:])}, expected the original image "
            f"size {tuple(meta.ori_size)}"
        )
    if masks.shape[0] == 0:
        return []
    # [N, H, W] -> Fortran-ordered uint8 [H, W, N], the layout pycocotools encodes.
    array = np.asfortranarray(masks.to(torch.uint8).permute(1, 2, 0).cpu().numpy())
    rles = mask_utils.encode(array)
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


class CocoEvaluator(PerImageResults):
    """Accumulates detections image by image and computes COCO metrics for the processed images.

    Args:
        ann_file: the ground truth: a COCO json path, a COCO dict, or a callable returning one (e.g.
            ``lightdet.data.CocoGroundTruth`` of a dataset in another format), see
            :data:`~lightdet.evaluation.ground_truth.GroundTruth`. Read on first use, so it may be
            generated after the evaluator is built.
        classes: the configured classes (a list, a bare name or a ``classes.txt`` path); label ``i``
            is the file's category named ``classes[i]``. None: every category of the file, by id.
        iou_types: subset of ``("bbox", "segm")``; ``segm`` needs ``Detections.masks``.
        backend: ``"faster_coco_eval"`` (C++, default) or ``"pycocotools"``; both give COCOeval's numbers.
        classwise: also compute per-class AP.
        outfile: when set, :meth:`compute` writes the COCO results json there (on rank zero).
    """

    def __init__(
        self,
        ann_file: GroundTruth,
        classes: ClassesSpec | None = None,
        *,
        iou_types: Sequence[IouType] = ("bbox",),
        backend: Backend = "faster_coco_eval",
        classwise: bool = True,
        outfile: str | None = None,
    ) -> None:
        bad = [t for t in iou_types if t not in IOU_TYPES]
        if bad or not iou_types or len(set(iou_types)) != len(iou_types):
            raise ValueError(f"iou_types={list(iou_types)}: expected distinct values among {list(IOU_TYPES)}")
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r}: expected one of {list(BACKENDS)}")
        self.ann_file = ann_file
        self.classes = classes
        self.iou_types: tuple[str, ...] = tuple(iou_types)
        self.backend = backend
        self.classwise = classwise
        self.outfile = outfile
        self._gt: Any = None
        self._cat_ids: list[int] = []
        self._class_names: list[str] = []
        self.reset()

    # -- ground truth ---------------------------------------------------------------------------------
    def _api(self) -> tuple[type, Callable[..., Any]]:
        """The backend's ``COCO`` class and a ``(gt, dt, iou_type) -> COCOeval`` factory."""
        if self.backend == "pycocotools":
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval

            return COCO, COCOeval
        from faster_coco_eval import COCO, COCOeval_faster

        return COCO, functools.partial(COCOeval_faster, print_function=log.debug)

    def _ground_truth(self) -> Any:
        """The backend's COCO object for ``ann_file`` (loaded once), with the class map resolved."""
        if self._gt is None:
            dataset = load_coco_ground_truth(self.ann_file, "CocoEvaluator")
            self._class_names, self._cat_ids = match_categories(
                self.classes, dataset["categories"], source=self.source
            )
            coco_cls, _ = self._api()
            with _quiet():
                gt = coco_cls()
                gt.dataset = dataset
                gt.createIndex()
            self._gt = gt
        return self._gt

    def process(self, detections: Sequence[Detections], metas: Sequence[ImageMeta]) -> None:
        """Converts one batch of detections to COCO result dicts and stores them with their image ids.

        Args:
            detections: per image, boxes ``[N, 4]`` xyxy in original-image pixels, scores ``[N]``,
                labels ``[N]`` in ``0..K-1`` (and masks ``[N, H, W]`` for segm).
            metas: the images' metas, ``metas[i].image_id`` being ``detections[i]``'s id in ``ann_file``.
        """
        if len(detections) != len(metas):
            raise ValueError(f"process() got {len(detections)} detections for {len(metas)} image metas")
        gt = self._ground_truth()
        for det, meta in zip(detections, metas):
            image_id = int(meta.image_id)
            if image_id not in gt.imgs:
                raise ValueError(
                    f"{self.source}: image_id {image_id} ({meta.file_name}) is not among the file's images"
                )
            self._image_ids.append(image_id)
            self._results.append(self._to_coco(det.to("cpu"), meta))

    def _to_coco(self, det: Detections, meta: ImageMeta) -> list[dict[str, Any]]:
        """One image's detections -> COCO result dicts (image_id, category_id, xywh bbox, score)."""
        k = len(self._cat_ids)
        if len(det) and (int(det.labels.min()) < 0 or int(det.labels.max()) >= k):
            raise ValueError(
                f"image_id {meta.image_id}: detection labels {det.labels.unique().tolist()} "
                f"outside 0..{k - 1} "
                f"({k} configured classes of {self.source})"
            )
        cat_ids = torch.tensor(self._cat_ids, dtype=torch.int64)[det.labels].tolist()
        boxes = xyxy_to_xywh(det.boxes).tolist()
        scores = det.scores.double().tolist()
        records = [
            {"image_id": int(meta.image_id), "category_id": c, "bbox": b, "score": s}
            for c, b, s in zip(cat_ids, boxes, scores)
        ]
        if "segm" in self.iou_types:
            for record, rle in zip(records, _encode_masks(det.masks, meta)):
                record["segmentation"] = rle
        return records

    # -- metrics --------------------------------------------------------------------------------------
    def compute(self) -> EvalResult:
        """COCO metrics over the processed images (each counted once). Writes ``outfile`` if set.

        Raises:
            RuntimeError: when no image was processed.
        """
        image_ids, per_image = self.merged()
        if not image_ids:
            raise RuntimeError(f"CocoEvaluator({self.source}): no images were processed before compute()")
        results = [r for image_results in per_image for r in image_results]
        if self.outfile and is_rank_zero():
            self._write_results(results)
        metrics: dict[str, float] = {}
        per_class: dict[str, dict[str, float]] = {}
        for iou_type in self.iou_types:
            stats, precision = self._run_cocoeval(iou_type, sorted(image_ids), results)
            metrics.update({f"{iou_type}_{name}": float(v) for name, v in zip(COCO_STAT_NAMES, stats)})
            per_class[iou_type] = self._per_class_ap(precision) if self.classwise else {}
        return EvalResult(metrics=metrics, per_class_by_type=per_class, num_images=len(image_ids))

    def _write_results(self, results: list[dict[str, Any]]) -> None:
        path = Path(self.outfile)  # type: ignore[arg-type]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results), encoding="utf-8")
        log.info("wrote %d COCO results to %s", len(results), path)

    def _run_cocoeval(
        self, iou_type: str, image_ids: list[int], results: list[dict[str, Any]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Runs COCOeval on ``image_ids`` and the configured categories.

        Returns:
            ``stats`` ``[12]`` and COCOeval's ``precision`` ``[T=10, R=101, K, A=4, M=3]`` (K in sorted
            category-id order).
        """
        gt = self._ground_truth()
        drop = _DROP_FOR_TYPE[iou_type]
        # loadRes adds keys (id, area, ...) to the dicts it gets: give it copies.
        dt_records = [{k: v for k, v in r.items() if k != drop} for r in results]
        _, make_eval = self._api()
        with _quiet():
            dt = gt.loadRes(dt_records) if dt_records else self._empty_results(gt)
            evaluator = make_eval(gt, dt, iouType=iou_type)
            evaluator.params.imgIds = image_ids
            evaluator.params.catIds = sorted(self._cat_ids)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        stats = np.asarray(evaluator.stats[: len(COCO_STAT_NAMES)], dtype=np.float64)
        return stats, evaluator.eval["precision"]

    @staticmethod
    def _empty_results(gt: Any) -> Any:
        """A results COCO object without detections (pycocotools' loadRes rejects an empty list)."""
        dt = type(gt)()
        dt.dataset = {
            "images": list(gt.dataset["images"]),
            "categories": copy.deepcopy(gt.dataset["categories"]),
            "annotations": [],
        }
        dt.createIndex()
        return dt

    def _per_class_ap(self, precision: np.ndarray) -> dict[str, float]:
        """AP@[0.50:0.95] (area all, 100 detections) per configured class, NaN without ground truth."""
        column = {cat_id: k for k, cat_id in enumerate(sorted(self._cat_ids))}
        out: dict[str, float] = {}
        for name, cat_id in zip(self._class_names, self._cat_ids):
            p = precision[:, :, column[cat_id], 0, -1]
            valid = p[p > -1]
            out[name] = float(valid.mean()) if valid.size else float("nan")
        return out

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
from lightdet.evaluation.result import PROTOCOL_STATS, EvalResult
from lightdet.structures import Detections, ImageMeta, xyxy_to_xywh

__all__ = ["CocoEvaluator", "IOU_TYPES", "BACKENDS"]

log = logging.getLogger(__name__)

IouType = Literal["bbox", "segm"]
Protocol = Literal["coco", "lvis", "oid"]
#: COCOeval keyword of each protocol other than COCO's (hotcoco's federated LVIS and Open Images modes)
_PROTOCOL_FLAGS = {"coco": {}, "lvis": {"lvis_style": True}, "oid": {"oid_style": True}}
Backend = Literal["hotcoco", "faster_coco_eval", "pycocotools"]
IOU_TYPES: tuple[str, ...] = ("bbox", "segm")
BACKENDS: tuple[str, ...] = ("hotcoco", "faster_coco_eval", "pycocotools")

#: One image's results: ``float64 [N, 7]`` rows ``(image_id, x, y, w, h, score, category_id)`` (the array
#: COCO's ``loadRes`` takes) and, for segm, the N masks as compressed RLEs.
ImageResults = tuple[np.ndarray, list[dict[str, Any]] | None]

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


def _records(rows: np.ndarray, rles: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """``[N, 7]`` result rows (+ RLEs) -> COCO result dicts, as a results json holds them."""
    records = [
        {"image_id": int(r[0]), "category_id": int(r[6]), "bbox": r[1:5].tolist(), "score": float(r[5])}
        for r in rows
    ]
    for record, rle in zip(records, rles or []):
        record["segmentation"] = rle
    return records


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
        backend: ``"hotcoco"`` (Rust, default: results go in as arrays, no dict per detection),
            ``"faster_coco_eval"`` (C++) or ``"pycocotools"``; all three give COCOeval's numbers.
        classwise: also compute per-class AP.
        outfile: when set, :meth:`compute` writes the COCO results json there (on rank zero).
        protocol: ``"coco"``; ``"lvis"`` (federated: each image's ``neg_category_ids`` and
            ``not_exhaustive_category_ids`` decide which detections count, 300 per image, AP over rare /
            common / frequent categories) or ``"oid"`` (Open Images: AP at IoU 0.5, group-of boxes); both
            need the ``hotcoco`` backend.
    """

    def __init__(
        self,
        ann_file: GroundTruth,
        classes: ClassesSpec | None = None,
        *,
        iou_types: Sequence[IouType] = ("bbox",),
        backend: Backend = "hotcoco",
        classwise: bool = True,
        outfile: str | None = None,
        protocol: Protocol = "coco",
    ) -> None:
        bad = [t for t in iou_types if t not in IOU_TYPES]
        if bad or not iou_types or len(set(iou_types)) != len(iou_types):
            raise ValueError(f"iou_types={list(iou_types)}: expected distinct values among {list(IOU_TYPES)}")
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r}: expected one of {list(BACKENDS)}")
        if protocol not in _PROTOCOL_FLAGS:
            raise ValueError(f"protocol={protocol!r}: expected one of {list(_PROTOCOL_FLAGS)}")
        if protocol != "coco" and backend != "hotcoco":
            raise ValueError(f"protocol={protocol!r} is evaluated by the hotcoco backend, not {backend!r}")
        self.protocol = protocol
        self.ann_file = ann_file
        self.classes = classes
        self.iou_types: tuple[str, ...] = tuple(iou_types)
        self.backend = backend
        self.classwise = classwise
        self.outfile = outfile
        self._gt: Any = None
        self._known_ids: set[int] = set()
        self._cat_ids: list[int] = []
        self._class_names: list[str] = []
        self.reset()

    # -- ground truth ---------------------------------------------------------------------------------
    def _api(self) -> tuple[type, Callable[..., Any]]:
        """The backend's ``COCO`` class and a ``(gt, dt, iou_type) -> COCOeval`` factory."""
        if self.backend == "hotcoco":
            from hotcoco import COCO, COCOeval

            return COCO, COCOeval
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
            self._known_ids = {int(image["id"]) for image in dataset["images"]}
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
        self._ground_truth()
        for det, meta in zip(detections, metas):
            image_id = int(meta.image_id)
            if image_id not in self._known_ids:
                raise ValueError(
                    f"{self.source}: image_id {image_id} ({meta.file_name}) is not among the file's images"
                )
            self._image_ids.append(image_id)
            self._results.append(self._to_coco(det.to("cpu"), meta))

    def _to_coco(self, det: Detections, meta: ImageMeta) -> ImageResults:
        """One image's detections -> its ``[N, 7]`` result rows (and RLEs for segm)."""
        k = len(self._cat_ids)
        if len(det) and (int(det.labels.min()) < 0 or int(det.labels.max()) >= k):
            raise ValueError(
                f"image_id {meta.image_id}: detection labels {det.labels.unique().tolist()} "
                f"outside 0..{k - 1} "
                f"({k} configured classes of {self.source})"
            )
        rows = np.empty((len(det), 7), dtype=np.float64)
        rows[:, 0] = int(meta.image_id)
        rows[:, 1:5] = xyxy_to_xywh(det.boxes).double().numpy()
        rows[:, 5] = det.scores.double().numpy()
        rows[:, 6] = np.asarray(self._cat_ids, dtype=np.float64)[det.labels.numpy()]
        rles = _encode_masks(det.masks, meta) if "segm" in self.iou_types else None
        return rows, rles

    # -- metrics --------------------------------------------------------------------------------------
    def compute(self) -> EvalResult:
        """COCO metrics over the processed images (each counted once). Writes ``outfile`` if set.

        Raises:
            RuntimeError: when no image was processed.
        """
        image_ids, per_image = self.merged()
        if not image_ids:
            raise RuntimeError(f"CocoEvaluator({self.source}): no images were processed before compute()")
        rows = np.concatenate([r for r, _ in per_image]) if per_image else np.zeros((0, 7))
        rles = [m for _, masks in per_image for m in (masks or [])] if "segm" in self.iou_types else None
        if self.outfile and is_rank_zero():
            self._write_results(_records(rows, rles))
        metrics: dict[str, float] = {}
        per_class: dict[str, dict[str, float]] = {}
        names = [name for name, _ in PROTOCOL_STATS[self.protocol]]
        for iou_type in self.iou_types:
            evaluator = self._run_cocoeval(iou_type, sorted(image_ids), rows, rles)
            stats = np.asarray(evaluator.stats[: len(names)], dtype=np.float64)
            metrics.update({f"{iou_type}_{name}": float(v) for name, v in zip(names, stats)})
            per_class[iou_type] = self._per_class_ap(evaluator) if self.classwise else {}
        return EvalResult(
            metrics=metrics, per_class_by_type=per_class, num_images=len(image_ids), protocol=self.protocol
        )

    def _write_results(self, results: list[dict[str, Any]]) -> None:
        path = Path(self.outfile)  # type: ignore[arg-type]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results), encoding="utf-8")
        log.info("wrote %d COCO results to %s", len(results), path)

    def _run_cocoeval(
        self, iou_type: str, image_ids: list[int], rows: np.ndarray, rles: list[dict[str, Any]] | None
    ) -> Any:
        """Runs COCOeval (evaluate, accumulate, summarize) on ``image_ids`` and the configured categories."""
        gt = self._ground_truth()
        _, make_eval = self._api()
        with _quiet():
            dt = self._load_results(gt, iou_type, rows, rles) if len(rows) else self._empty_results(gt)
            evaluator = make_eval(gt, dt, iouType=iou_type, **_PROTOCOL_FLAGS[self.protocol])
            evaluator.params.imgIds = image_ids
            evaluator.params.catIds = sorted(self._cat_ids)
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
        return evaluator

    def _load_results(self, gt: Any, iou_type: str, rows: np.ndarray, rles: list[dict[str, Any]] | None) -> Any:
        """The backend's results object: hotcoco takes box rows as they are, other inputs go as dicts."""
        if self.backend == "hotcoco" and iou_type == "bbox":
            return gt.loadRes(rows)
        # loadRes takes a result's area from its box when it has one: mask results must not carry it
        drop = _DROP_FOR_TYPE[iou_type]
        return gt.loadRes([{k: v for k, v in r.items() if k != drop} for r in _records(rows, rles)])

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

    def _per_class_ap(self, evaluator: Any) -> dict[str, float]:
        """AP per configured class (NaN without ground truth): COCO's AP@[0.50:0.95] (area all, 100
        detections) from the precision array; LVIS and Open Images as their protocol defines it."""
        if self.protocol != "coco":
            found = evaluator.results(per_class=True)["per_class"]
            values = {name: float(found.get(name, -1.0)) for name in self._class_names}
            return {name: v if v >= 0 else float("nan") for name, v in values.items()}
        # precision [T=10, R=101, K, A=4, M=3], K in sorted category-id order
        precision = np.asarray(evaluator.eval["precision"])
        column = {cat_id: k for k, cat_id in enumerate(sorted(self._cat_ids))}
        out: dict[str, float] = {}
        for name, cat_id in zip(self._class_names, self._cat_ids):
            p = precision[:, :, column[cat_id], 0, -1]
            valid = p[p > -1]
            out[name] = float(valid.mean()) if valid.size else float("nan")
        return out

"""``lightdet-data check``: a dataset doctor that reads annotation files and reports what would go wrong.

A dataset states its annotation files and reads each one as a COCO dict that keeps the file's raw values
(no clipping, no dropping; :class:`~lightdet.data.sources.AnnotationSource`), then one set of checks runs
on it, whatever the format, and every image is decoded as training decodes it
(:mod:`lightdet.data.check_images`, in ``workers`` processes). Findings are :class:`Issue` objects with
a severity: ``error`` (loading fails or training silently learns the wrong thing), ``warning`` (the
loader repairs it, e.g. clips or drops a box, or a heuristic suspects a mistake) or ``info``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lightdet.categories import ClassesSpec, load_class_names
from lightdet.data.check_images import Progress, check_image_files
from lightdet.data.coco_format import coco_problems
from lightdet.data.datasets.files import file_sources
from lightdet.data.image_io import ExifMode
from lightdet.data.records import segmentation_problem
from lightdet.data.sources import AnnotationSource

__all__ = ["ImagePass", "Issue", "SplitReport", "check_annotation_file", "check_coco_dict", "check_source"]

Severity = Literal["error", "warning", "info"]
_EXAMPLES = 5
_SLACK = 1.0  # pixels a box may pass the image border before it counts as outside


@dataclass
class Issue:
    """One kind of defect: ``code`` (stable, for scripts), a message, how often, and a few examples."""

    severity: Severity
    code: str
    message: str
    count: int = 1
    examples: list[str] = field(default_factory=list)


@dataclass
class SplitReport:
    """The findings for one annotation file (one split)."""

    split: str
    source: str
    num_images: int = 0
    num_boxes: int = 0
    instances: dict[str, int] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(1 for i in self.issues if i.severity == "error")

    @property
    def warnings(self) -> int:
        return sum(1 for i in self.issues if i.severity == "warning")

    def add(self, severity: Severity, code: str, message: str, examples: Sequence[str] = (), count: int = 1) -> None:
        self.issues.append(Issue(severity, code, message, count, list(examples)[:_EXAMPLES]))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "errors": self.errors, "warnings": self.warnings}


@dataclass(frozen=True)
class ImagePass:
    """How the image files are checked: the ``exif`` setting training will use, ``workers`` processes
    (0: in this one), and a ``progress(done, total)`` callback."""

    exif: ExifMode = "ignore"
    workers: int = 0
    progress: Progress | None = None


def _check_images(report: SplitReport, images: list[dict[str, Any]], folder: Path | None, how: ImagePass) -> None:
    counts = Counter(int(img.get("id", -1)) for img in images)
    dupes = [str(i) for i, c in counts.items() if c > 1]
    if dupes:
        report.add("error", "duplicate_image_id", f"{len(dupes)} image id(s) are used by more than one image",
                   [f"image id {d}" for d in dupes], len(dupes))
    if folder is None:
        report.add("info", "images_not_checked", "no image folder given: image files were not checked")
        return
    check_image_files(report, images, folder, exif=how.exif, workers=how.workers, progress=how.progress)


def _check_structure(report: SplitReport, coco: dict[str, Any]) -> bool:
    """Reports entries with missing keys or values of the wrong type (one issue per section); True if none."""
    problems = coco_problems(coco)
    by_section: dict[str, list[str]] = {}
    for section, message in problems:
        by_section.setdefault(section, []).append(message)
    nouns = {"file": "file", "images": "image", "annotations": "annotation", "categories": "category"}
    for section, messages in by_section.items():
        what = "the file's structure is wrong" if section == "file" else (
            f"{len(messages)} `{section}` entr(ies) lack a key or hold a value of the wrong type")
        report.add("error", f"malformed_{nouns[section]}", f"{what}: nothing else was checked", messages,
                   len(messages))
    return not problems


def _references(report: SplitReport, coco: dict[str, Any], anns: list[dict[str, Any]]) -> np.ndarray:
    """Flags annotations naming an unknown image or category; returns ``bool [M]`` of the valid ones."""
    image_ids = {int(img.get("id", -1)) for img in coco["images"]}
    cat_ids = {int(c["id"]) for c in coco.get("categories", [])}
    bad_img = [a for a in anns if int(a["image_id"]) not in image_ids]
    bad_cat = [a for a in anns if int(a["category_id"]) not in cat_ids]
    if bad_img:
        report.add("error", "unknown_image_id", f"{len(bad_img)} annotation(s) refer to an image id not in `images`",
                   [f"annotation {a.get('id')}: image_id {a['image_id']}" for a in bad_img], len(bad_img))
    if bad_cat:
        report.add("error", "unknown_category_id",
                   f"{len(bad_cat)} annotation(s) have a category_id that is not in `categories` "
                   f"(ids {sorted(cat_ids)})",
                   [f"annotation {a.get('id')} (image {a['image_id']}): category_id {a['category_id']}"
                    for a in bad_cat], len(bad_cat))
    return np.array([int(a["image_id"]) in image_ids for a in anns], dtype=bool)


def _finite_boxes(report: SplitReport, anns: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Reports boxes with NaN or infinite numbers; returns the annotations whose boxes are finite."""
    raw = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
    finite = np.isfinite(raw).all(axis=1)
    if not finite.all():
        bad = [a for a, ok in zip(anns, finite) if not ok]
        report.add("error", "non_finite_box", f"{len(bad)} box(es) have NaN or infinite coordinates (loading the "
                   "file fails)", [f"annotation {a.get('id')} (image {a['image_id']}): bbox {a['bbox']}"
                                   for a in bad[:_EXAMPLES]], len(bad))
    return [a for a, ok in zip(anns, finite) if ok]


def _check_boxes(report: SplitReport, coco: dict[str, Any], anns: list[dict[str, Any]], box_format: str) -> None:
    """Zero-size boxes, boxes outside their image, and boxes that look like the other convention."""
    valid = _references(report, coco, anns)
    anns = _finite_boxes(report, [a for a, ok in zip(anns, valid) if ok])
    if not anns:
        return
    size_of = {int(img["id"]): (img["width"], img["height"]) for img in coco["images"]}
    raw = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)  # as COCO xywh
    wh = np.array([size_of[int(a["image_id"])] for a in anns], dtype=np.float64)
    if box_format == "xyxy":  # the file's own numbers, and their reading as x, y, w, h
        given = np.concatenate((raw[:, :2], raw[:, :2] + raw[:, 2:]), axis=1)
        other = np.concatenate((given[:, :2], given[:, :2] + given[:, 2:]), axis=1)
    else:
        given = np.concatenate((raw[:, :2], raw[:, :2] + raw[:, 2:]), axis=1)
        other = raw
    zero = (given[:, 2] <= given[:, 0]) | (given[:, 3] <= given[:, 1])
    outside = ~zero & ((given[:, :2] < -_SLACK).any(axis=1) | (given[:, 2:] > wh + _SLACK).any(axis=1))
    other_ok = (other[:, 2] > other[:, 0]) & (other[:, 3] > other[:, 1]) & (other[:, :2] >= -_SLACK).all(axis=1) \
        & (other[:, 2:] <= wh + _SLACK).all(axis=1)
    swapped = (zero | outside) & other_ok

    def examples(mask: np.ndarray) -> list[str]:
        return [f"annotation {anns[i].get('id')} (image {anns[i]['image_id']}): bbox {anns[i]['bbox']} in a "
                f"{int(wh[i, 0])}x{int(wh[i, 1])} image" for i in np.flatnonzero(mask)[:_EXAMPLES]]

    if zero.any():
        report.add("warning", "zero_size_box", f"{int(zero.sum())} box(es) have zero or negative width/height "
                   "(dropped when loading; they give NaN losses elsewhere)", examples(zero), int(zero.sum()))
    if outside.any():
        report.add("warning", "box_outside_image", f"{int(outside.sum())} box(es) extend beyond their image "
                   "(clipped when loading)", examples(outside), int(outside.sum()))
    if swapped.any():
        expected, other_name = ("x1, y1, x2, y2", "x, y, w, h") if box_format == "xyxy" else ("x, y, w, h", "x1, y1, x2, y2")
        share = float(swapped.mean())
        report.add("error" if share > 0.5 else "warning", "box_format_suspect",
                   f"{int(swapped.sum())} box(es) ({share:.0%}) are invalid as {expected} (this format's convention) "
                   f"but fit the image when read as {other_name}: were they written in the other convention? "
                   "(a common cause of AP = 0)", examples(swapped), int(swapped.sum()))


def _check_segmentations(report: SplitReport, coco: dict[str, Any], anns: list[dict[str, Any]]) -> None:
    """Segmentations that pycocotools cannot rasterise (a dataset with ``with_mask=True`` refuses them)."""
    size_of = {int(img["id"]): (int(img["height"]), int(img["width"])) for img in coco["images"]}
    bad = []
    for a in anns:
        if a.get("segmentation") and int(a["image_id"]) in size_of:
            problem = segmentation_problem(a["segmentation"], *size_of[int(a["image_id"])])
            if problem is not None:
                bad.append(f"annotation {a.get('id')} (image {a['image_id']}): {problem}")
    if bad:
        report.add("warning", "bad_segmentation", f"{len(bad)} segmentation(s) cannot be rasterised (loading with "
                   "masks fails on them)", bad, len(bad))


def _check_classes(report: SplitReport, coco: dict[str, Any], classes: list[str] | None) -> None:
    cats = sorted(coco.get("categories", []), key=lambda c: int(c["id"]))
    names = [str(c["name"]) for c in cats]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        report.add("error", "duplicate_category_name", f"category name(s) {dupes} appear under several ids")
    if not names:
        report.add("error", "no_categories", "the file defines no categories")
    if classes is None:
        return
    missing = [c for c in classes if c not in names]
    if missing:
        report.add("error", "class_not_in_file", f"configured class(es) {missing} are not categories of the file; "
                   f"the file has, in id order: {names}", count=len(missing))
    extra = [n for n in names if n not in classes]
    if extra:
        report.add("info", "categories_not_configured", f"{len(extra)} categories of the file are not configured "
                   f"and are dropped when loading: {extra}", count=len(extra))
    if not missing and not extra and names != classes:
        report.add("warning", "class_order_differs", "the configured classes are the file's categories in another "
                   f"order; labels follow the configured order {classes} (the file's is {names}); a checkpoint "
                   "trained with the other order predicts the wrong names")


def _count_instances(report: SplitReport, coco: dict[str, Any], classes: list[str] | None) -> None:
    name_of = {int(c["id"]): str(c["name"]) for c in coco.get("categories", [])}
    anns = coco.get("annotations", [])
    counts = Counter(name_of.get(int(a["category_id"]), f"<unknown id {a['category_id']}>")
                     for a in anns if not a.get("iscrowd", 0))
    order = list(classes or []) + [n for n in name_of.values() if n not in (classes or [])]
    report.instances = {n: counts.get(n, 0) for n in order} | {n: c for n, c in counts.items() if n not in order}
    report.num_images, report.num_boxes = len(coco["images"]), len(anns)
    ignored = sum(1 for a in anns if a.get("iscrowd", 0))
    if ignored:
        report.add("info", "ignored_boxes", f"{ignored} crowd/difficult/ignore box(es) are neither positives nor "
                   "negatives", count=ignored)
    empty = [c for c in (classes or []) if counts.get(c, 0) == 0]
    if empty:
        report.add("warning", "class_without_instances", f"configured class(es) {empty} have no boxes in this split",
                   count=len(empty))
    with_boxes = {int(a["image_id"]) for a in anns}
    no_boxes = sum(1 for img in coco["images"] if int(img.get("id", -1)) not in with_boxes)
    if no_boxes:
        report.add("info", "images_without_boxes", f"{no_boxes} image(s) have no boxes", count=no_boxes)


def check_coco_dict(
    coco: Mapping[str, Any], *, source: str, split: str = "", img_dir: str | PathLike | None = None,
    classes: Sequence[str] | None = None, box_format: str = "xywh", images: ImagePass = ImagePass(),
) -> SplitReport:
    """Runs every check on a raw COCO-style dict (:func:`check_source` reads one from a dataset's file);
    ``images`` says how the image files under ``img_dir`` are decoded."""
    report = SplitReport(split=split, source=source)
    if not _check_structure(report, coco):  # type: ignore[arg-type]
        return report
    coco = dict(coco)
    coco.setdefault("images", [])
    anns = list(coco.get("annotations", []))
    _check_images(report, list(coco["images"]), Path(img_dir) if img_dir is not None else None, images)
    _check_classes(report, coco, list(classes) if classes is not None else None)
    _check_boxes(report, coco, anns, box_format)
    _check_segmentations(report, coco, anns)
    _count_instances(report, coco, list(classes) if classes is not None else None)
    return report


def _unreadable(source: str, split: str, err: Exception) -> SplitReport:
    report = SplitReport(split=split, source=source)
    report.add("error", "unreadable_annotations", f"cannot read the annotation file: {err}")
    return report


def check_source(source: AnnotationSource, split: str = "", images: ImagePass = ImagePass()) -> SplitReport:
    """Checks one annotation file of a dataset; a file that cannot be read is one error."""
    names = load_class_names(source.classes) if source.classes is not None else None
    try:
        coco = source.read_coco()
    except (OSError, ValueError, KeyError, TypeError) as err:
        return _unreadable(source.ann_file, split, err)
    return check_coco_dict(coco, source=source.ann_file, split=split, img_dir=source.img_dir, classes=names,
                           box_format=source.box_format, images=images)


def check_annotation_file(
    ann_file: str | PathLike, img_dir: str | PathLike | None = None, *, classes: ClassesSpec | None = None,
    split: str = "", exif: ExifMode = "ignore", workers: int = 0, progress: Progress | None = None,
) -> SplitReport:
    """Checks one annotation file of a built-in format (see :mod:`lightdet.data.datasets.files`); ``exif``,
    ``workers`` and ``progress`` as for :class:`ImagePass`."""
    if classes is not None:
        load_class_names(classes)  # a bad --classes is a usage error, not a finding about the file
    try:
        (source,) = file_sources(ann_file, img_dir, classes=classes)
    except (OSError, ValueError, KeyError, TypeError) as err:
        return _unreadable(str(ann_file), split, err)
    return check_source(source, split, ImagePass(exif, workers, progress))

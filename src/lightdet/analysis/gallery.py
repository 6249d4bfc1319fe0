"""The gallery of the worst images: false positives and missed objects drawn on the images themselves.

Images are ranked by their errors at the analysis' operating point (IoU 0.5, the score threshold with the
best F1): false positives plus missed objects, most first. Each tile shows the correct detections (green),
the false positives (red, with class and score) and the missed objects (orange, dashed, with class).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from PIL import Image

from lightdet.analysis.coco import Evaluated
from lightdet.analysis.numbers import Analysis
from lightdet.analysis.plots import save

__all__ = ["GalleryImage", "worst_images", "plot_gallery"]

_COLOURS = {"tp": "#2ca02c", "fp": "#d62728", "fn": "#ff7f0e"}


@dataclass
class GalleryImage:
    """One image of the gallery: its id, file name, size ``(width, height)``, error counts and the boxes to draw.

    ``boxes`` are ``(kind, xywh, caption)`` with kind ``tp`` (a correct detection), ``fp`` (a false
    positive) or ``fn`` (a missed object).
    """

    image_id: int
    file_name: str
    size: tuple[int, int]
    tp: int
    fp: int
    fn: int
    boxes: list[tuple[str, list[float], str]]


def worst_images(ev: Evaluated, analysis: Analysis, count: int = 12) -> list[GalleryImage]:
    """The ``count`` images with the most false positives plus missed objects (those with none left out), with
    the detections scoring at least the analysis' best-F1 threshold and the objects they missed."""
    ranked = sorted(
        ((i, s) for i, s in analysis.images.items() if s["fp"] + s["fn"] > 0),
        key=lambda item: (-(item[1]["fp"] + item[1]["fn"]), item[1]["tp"], item[0]),
    )[:count]
    chosen = {i for i, _ in ranked}
    names = dict(zip(analysis.cat_ids, analysis.class_names))
    boxes: dict[int, list[tuple[str, list[float], str]]] = defaultdict(list)
    dt_status, gt_status = analysis.box_status["dt"], analysis.box_status["gt"]
    threshold = analysis.best_threshold
    for det in ev.results:
        kind = dt_status.get(det["id"])
        if det["image_id"] in chosen and kind in ("tp", "fp") and det["score"] >= threshold:
            boxes[det["image_id"]].append((kind, det["bbox"], f"{names[det['category_id']]} {det['score']:.2f}"))
    for ann in ev.gt_dict["annotations"]:
        if ann["image_id"] in chosen and gt_status.get(ann["id"]) == "fn":
            boxes[ann["image_id"]].append(("fn", ann["bbox"], f"missed {names.get(ann['category_id'], '?')}"))
    images = {int(img["id"]): img for img in ev.gt_dict["images"]}
    return [
        GalleryImage(i, str(images[i].get("file_name", "")), (int(images[i]["width"]), int(images[i]["height"])),
                     s["tp"], s["fp"], s["fn"], boxes[i])  # fmt: skip
        for i, s in ranked
    ]


#: Longest side (pixels) an image is drawn at; its boxes keep the original coordinates.
_TILE_PIXELS = 512


def _load(img_dir: Path | None, file_name: str) -> np.ndarray | None:
    """The image as ``uint8 [h, w, 3]`` at most :data:`_TILE_PIXELS` wide/high; None when it cannot be found."""
    path = Path(file_name)
    if not path.is_absolute() and img_dir is not None:
        path = img_dir / file_name
    if not path.is_file():
        return None
    with Image.open(path) as image:
        thumb = image.convert("RGB")
        thumb.thumbnail((_TILE_PIXELS, _TILE_PIXELS))
        return np.asarray(thumb)


def _draw_tile(ax: Any, item: GalleryImage, pixels: np.ndarray | None) -> None:
    width, height = item.size
    if pixels is None:  # a grey frame of the image's size keeps the boxes in place
        ax.add_patch(Rectangle((0, 0), width, height, color="0.93"))
        ax.text(0.5, 0.5, f"{item.file_name}\nnot found", ha="center", va="center", fontsize=8, transform=ax.transAxes)
    else:
        ax.imshow(pixels, extent=(0, width, height, 0))
    ax.set(xlim=(0, width), ylim=(height, 0), aspect="equal")
    scale = max(width, height) / 300
    for kind, (x, y, w, h), caption in sorted(item.boxes, key=lambda b: b[0] == "tp", reverse=True):
        colour = _COLOURS[kind]
        ax.add_patch(Rectangle((x, y), w, h, fill=False, lw=2 if kind != "tp" else 1.2, ec=colour,
                               ls="--" if kind == "fn" else "-"))  # fmt: skip
        if kind != "tp":  # false positives captioned above their box, missed objects below theirs
            above = kind == "fp"
            ax.text(x, y - 2 * scale if above else y + h + 2 * scale, caption, color="white", fontsize=6, clip_on=True,
                    va="bottom" if above else "top", bbox={"facecolor": colour, "alpha": 0.85, "pad": 1, "lw": 0})
    ax.set_title(f"{Path(item.file_name).name} (id {item.image_id}): {item.fp} false pos., {item.fn} missed",
                 fontsize=8)  # fmt: skip
    ax.set_axis_off()


def plot_gallery(
    items: Sequence[GalleryImage], img_dir: str | PathLike | None, path: Path, *, score_thr: float
) -> Path:
    """A grid of ``items`` with their errors drawn (see the module docstring); one PNG."""
    cols = min(4, max(1, len(items)))
    rows = max(1, math.ceil(len(items) / cols))
    fig = Figure(figsize=(max(12, 4 * cols), 4 * rows + 0.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    folder = Path(img_dir) if img_dir is not None else None
    for ax, item in zip(axes, items):
        _draw_tile(ax, item, _load(folder, item.file_name))
    for ax in axes[len(items) :]:
        ax.set_axis_off()
    if not items:
        axes[0].text(0.5, 0.5, "no image has a false positive or a missed object", ha="center", va="center")
    handles = [
        Line2D([], [], color=_COLOURS["tp"], lw=2, label="correct detection"),
        Line2D([], [], color=_COLOURS["fp"], lw=2, label="false positive (class, score)"),
        Line2D([], [], color=_COLOURS["fn"], lw=2, ls="--", label="missed object"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncols=3)
    fig.suptitle(f"Worst images: most false positives + missed objects at IoU 0.5, scores >= {score_thr:.2f}")
    return save(fig, path)

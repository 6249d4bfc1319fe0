"""``lightdet-data browse`` and ``stats``: samples drawn as the model sees them, box statistics and plots.

Plots are drawn with PIL (bar charts), so no plotting library is needed. Anchor coverage takes a built
anchor generator (any callable ``(feature_sizes, padded_size) -> [anchors per level]`` with ``strides``),
so this module knows nothing of models.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torchvision.ops import box_iou
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

from lightdet.data.mix import MixStep
from lightdet.data.streams import seed_stream
from lightdet.structures import DetSample

__all__ = [
    "BoxStats", "anchor_coverage", "bar_chart", "box_stats", "browse", "class_colours", "draw_sample", "histogram",
]

_IGNORE_COLOUR = (128, 128, 128)


def class_colours(num_classes: int) -> list[tuple[int, int, int]]:
    """``num_classes`` well separated RGB colours (golden-ratio hues)."""
    hues = ((i * 0.618034) % 1.0 for i in range(num_classes))
    return [tuple(int(255 * c) for c in colorsys.hsv_to_rgb(h, 0.9, 1.0)) for h in hues]  # type: ignore[misc]


def draw_sample(sample: DetSample, class_names: Sequence[str]) -> torch.Tensor:
    """Draws boxes (label names; ignored boxes grey) and masks on ``sample.image``: ``uint8 [3, H, W]``."""
    image = sample.image
    colours = class_colours(len(class_names))
    labels = sample.labels.tolist()
    ignore = sample.ignore.tolist() if sample.ignore is not None else [False] * len(labels)
    box_colours = [_IGNORE_COLOUR if ig else colours[lab] for lab, ig in zip(labels, ignore)]
    if sample.masks is not None and len(sample.masks):
        image = draw_segmentation_masks(image, sample.masks.to_bitmaps().bool(), alpha=0.4, colors=box_colours)
    if len(labels) == 0:
        return image
    names = [f"{class_names[lab]}{' (ignore)' if ig else ''}" for lab, ig in zip(labels, ignore)]
    return draw_bounding_boxes(image, sample.boxes, labels=names, colors=box_colours, width=2)


def _cached_mix_steps(dataset: Any) -> list[MixStep]:
    """The multi-image steps of ``dataset``'s pipeline that draw from a cache, through wrappers."""
    steps = list(getattr(getattr(dataset, "pipeline", None), "transforms", []))
    inner = [d for d in (getattr(dataset, "dataset", None), *getattr(dataset, "datasets", [])) if d is not None]
    return [s for s in steps if isinstance(s, MixStep)] + [m for d in inner for m in _cached_mix_steps(d)]


def _warm_up(dataset: Any, rng: np.random.Generator) -> None:
    """Loads a few random images first, so that cached multi-image steps (Mosaic, MixUp ...), which pass
    samples through until their cache is full enough, show on the drawn ones as in a running worker."""
    count = max((s.num_others for s in _cached_mix_steps(dataset)), default=0)
    for index in rng.integers(0, len(dataset), count):
        dataset[int(index)]


def browse(
    dataset: Any, out_dir: str | PathLike, *, num: int = 8, seed: int | None = 0
) -> list[Path]:
    """Writes ``num`` samples of ``dataset`` (after its pipeline) with their annotations drawn, as PNG.

    Multi-image steps show too: cached ones (Mosaic, MixUp, CopyPaste in a pipeline list) have their
    cache filled with a few other images first; :class:`~lightdet.data.MultiImageMixDataset` draws
    from the dataset.

    Args:
        dataset: a lightdet dataset (items are ``DetSample``, ``class_names`` names the labels).
        seed: picks random images, and seeds the augmentations, with this seed (torch's generator is
            restored afterwards); None takes the first ``num`` images and leaves the augmentations to
            torch's current seed.

    Returns:
        The written files ``out_dir/<k>_<image_id>.png``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = min(num, len(dataset))
    rng = np.random.default_rng(seed)
    indices = range(n) if seed is None else rng.choice(len(dataset), n, replace=False)
    with torch.random.fork_rng(devices=[]):  # the caller's generator is left as it was
        if seed is not None:
            torch.manual_seed(seed)
            seed_stream(seed)
        _warm_up(dataset, rng)
        return [_write(dataset, int(index), out / f"{k:03d}") for k, index in enumerate(indices)]


def _write(dataset: Any, index: int, prefix: Path) -> Path:
    sample = dataset[index]
    path = prefix.with_name(f"{prefix.name}_{sample.meta.image_id}.png")
    Image.fromarray(draw_sample(sample, dataset.class_names).permute(1, 2, 0).numpy()).save(path)
    return path


@dataclass
class BoxStats:
    """Non-ignored boxes of a dataset: ``widths``/``heights`` ``[N]`` in pixels, ``labels`` ``[N]``."""

    widths: np.ndarray
    heights: np.ndarray
    labels: np.ndarray
    num_images: int

    @property
    def sizes(self) -> np.ndarray:
        """``sqrt(w * h)`` per box."""
        return np.sqrt(self.widths * self.heights)

    @property
    def aspect_ratios(self) -> np.ndarray:
        """``h / w`` per box (the anchor generator's ratio convention)."""
        return self.heights / np.maximum(self.widths, 1e-9)


def box_stats(records: Iterable[Any]) -> BoxStats:
    """Collects the non-ignored boxes of :class:`~lightdet.data.records.ImageRecord` objects."""
    w, h, labels, n = [], [], [], 0
    for r in records:
        n += 1
        keep = ~np.asarray(r.ignore, dtype=bool)
        boxes = np.asarray(r.boxes, dtype=np.float64).reshape(-1, 4)[keep]
        w.append(boxes[:, 2] - boxes[:, 0])
        h.append(boxes[:, 3] - boxes[:, 1])
        labels.append(np.asarray(r.labels, dtype=np.int64)[keep])
    cat = (lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.zeros(0, dt))  # noqa: E731
    return BoxStats(cat(w, np.float64), cat(h, np.float64), cat(labels, np.int64), n)


def anchor_coverage(
    samples: Iterable[tuple[tuple[int, int], torch.Tensor]],
    anchor_generator: Callable[..., list[torch.Tensor]],
    *,
    size_divisor: int = 32,
    iou_thr: float = 0.5,
) -> tuple[float, np.ndarray]:
    """Share of ground-truth boxes whose best-matching anchor has IoU >= ``iou_thr``.

    Args:
        samples: per image ``(img_size (H, W), boxes [N, 4] xyxy)`` as the model receives them.
        anchor_generator: called as ``anchor_generator(feature_sizes, padded_size)``; its ``strides``
            give each level's feature size ``ceil(padded / stride)``.
        size_divisor: the preprocessor pads images to a multiple of it.

    Returns:
        ``(coverage, best_iou [N_total])``; coverage is NaN without boxes.
    """
    best = []
    for (h, w), boxes in samples:
        if len(boxes) == 0:
            continue
        ph, pw = math.ceil(h / size_divisor) * size_divisor, math.ceil(w / size_divisor) * size_divisor
        feats = [(math.ceil(ph / s), math.ceil(pw / s)) for s in anchor_generator.strides]  # type: ignore[attr-defined]
        anchors = torch.cat(anchor_generator(feats, (ph, pw)))
        best.append(box_iou(boxes.float(), anchors).max(dim=1).values.numpy())
    best_iou = np.concatenate(best) if best else np.zeros(0)
    return (float((best_iou >= iou_thr).mean()) if len(best_iou) else float("nan")), best_iou


def bar_chart(
    values: Sequence[float], labels: Sequence[str], title: str, path: str | PathLike, *, width: int = 640,
    height: int = 360,
) -> Path:
    """Writes a simple vertical bar chart (value above each bar, label below) as PNG."""
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((10, 6), title, fill="black")
    left, right, top, bottom = 40, width - 10, 40, height - 40
    draw.line([(left, bottom), (right, bottom)], fill="black")
    top_value = max(max(values, default=0), 1e-9)
    slot = (right - left) / max(len(values), 1)
    colours = class_colours(max(len(values), 1))
    for i, (v, lab) in enumerate(zip(values, labels)):
        x0, x1 = left + i * slot + slot * 0.15, left + (i + 1) * slot - slot * 0.15
        y0 = bottom - (bottom - top) * v / top_value
        draw.rectangle([(x0, y0), (x1, bottom)], fill=colours[i % len(colours)], outline="black")
        draw.text((x0, y0 - 12), f"{v:g}", fill="black")
        draw.text((x0, bottom + 4 + 12 * (i % 2)), str(lab)[:12], fill="black")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def histogram(values: np.ndarray, edges: Sequence[float], title: str, path: str | PathLike) -> Path:
    """A bar chart of ``values`` counted in the bins ``[edges[i], edges[i + 1])`` (last bin open-ended)."""
    e = np.asarray(edges, dtype=np.float64)
    counts = np.histogram(np.clip(values, e[0], e[-1] - 1e-9), bins=e)[0] if len(values) else np.zeros(len(e) - 1)
    labels = [f"{e[i]:g}-{e[i + 1]:g}" for i in range(len(e) - 1)]
    return bar_chart([int(c) for c in counts], labels, title, path)

"""The built-in synthetic shapes dataset: a small COCO-format detection/segmentation set made offline.

``make_shapes`` draws filled shapes (circle, square, triangle, star, hexagon) on solid, gradient or
noise backgrounds and writes::

    out_dir/annotations/train.json   out_dir/train/000001.jpg ...
    out_dir/annotations/val.json     out_dir/val/000001.jpg ...
    out_dir/shapes.json              the generator's parameters

Every image is drawn from its own generator seeded by ``(seed, split, index)``, so the output is the
same bytes for the same arguments, and an image does not change when the split sizes do. The shapes
are rasterised with pycocotools from the very polygons written to the annotation file, so pixels and
segmentations agree exactly. Overlap between objects is limited (``max_overlap``) so that an
occluded polygon stays a fair segmentation of its visible shape.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

__all__ = ["SHAPE_CLASSES", "ShapesParams", "make_shapes", "ensure_shapes"]

logger = logging.getLogger(__name__)

SHAPE_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star", "hexagon")
SPLITS: tuple[str, ...] = ("train", "val")
_PARAMS_FILE = "shapes.json"
_MIN_CONTRAST = 70.0  # luminance difference (0..255) between an object and its background


def _regular_polygon(n: int, radius_ratio: float = 1.0) -> np.ndarray:
    """``[n, 2]`` vertices on the unit circle (alternating radius ``radius_ratio`` for stars)."""
    angles = np.arange(n) * (2 * np.pi / n)
    radii = np.where(np.arange(n) % 2 == 1, radius_ratio, 1.0)
    return np.stack((np.cos(angles) * radii, np.sin(angles) * radii), axis=1)


_UNIT_SHAPES: dict[str, np.ndarray] = {
    "circle": _regular_polygon(32),
    "square": _regular_polygon(4),
    "triangle": _regular_polygon(3),
    "star": _regular_polygon(10, radius_ratio=0.45),
    "hexagon": _regular_polygon(6),
}


@dataclass(frozen=True)
class ShapesParams:
    """The generator's knobs (all sizes in pixels; image sides and object sizes drawn uniformly).

    Attributes:
        num_train, num_val: number of images per split.
        seed: base seed; image ``i`` of a split uses ``(seed, split, i)``.
        min_image_size, max_image_size: range of each image side (width and height drawn apart,
            so aspect ratios vary).
        min_object_size, max_object_size: range of an object's diameter (log-uniform).
        max_objects: objects per image are drawn from ``1..max_objects``.
        max_overlap: the largest intersection of two objects' boxes, as a fraction of the smaller box.
        jpeg_quality: JPEG quality of the written images.
    """

    num_train: int = 1500
    num_val: int = 200
    seed: int = 0
    min_image_size: int = 112
    max_image_size: int = 144
    min_object_size: int = 16
    max_object_size: int = 80
    max_objects: int = 6
    max_overlap: float = 0.15
    jpeg_quality: int = 90

    def __post_init__(self) -> None:
        checks = {
            "num_train/num_val must be >= 0": min(self.num_train, self.num_val) >= 0,
            "need 8 <= min_image_size <= max_image_size": 8 <= self.min_image_size <= self.max_image_size,
            "need 4 <= min_object_size <= max_object_size <= min_image_size - 2": (
                4 <= self.min_object_size <= self.max_object_size <= self.min_image_size - 2
            ),
            "max_objects must be >= 1": self.max_objects >= 1,
            "max_overlap must be in [0, 1]": 0.0 <= self.max_overlap <= 1.0,
            "jpeg_quality must be in [1, 100]": 1 <= self.jpeg_quality <= 100,
        }
        failed = [msg for msg, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"invalid shapes parameters {asdict(self)}: {'; '.join(failed)}")


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., :3] @ np.array([0.299, 0.587, 0.114])


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """``uint8 [H, W, 3]``: a solid colour, a linear gradient or coloured noise."""
    kind = rng.integers(3)
    if kind == 0:
        canvas = np.empty((height, width, 3), dtype=np.float32)
        canvas[...] = rng.uniform(0, 255, 3)
    elif kind == 1:
        c0, c1 = rng.uniform(0, 255, (2, 3)).astype(np.float32)
        phi = rng.uniform(0, 2 * np.pi)
        xs, ys = np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)[:, None]
        t = xs * np.cos(phi) + ys * np.sin(phi)
        t = (t - t.min()) / max(float(np.ptp(t)), 1e-6)
        canvas = c0 + t[..., None] * (c1 - c0)
    else:
        canvas = rng.random((height, width, 3), dtype=np.float32)  # uniform noise of amplitude 15..50
        canvas *= rng.uniform(30, 100)
        canvas += rng.uniform(0, 200, 3).astype(np.float32)
    return np.clip(canvas, 0, 255, out=canvas).astype(np.uint8)


def _contrasting_colour(rng: np.random.Generator, background_lum: float) -> np.ndarray:
    """A random RGB colour whose luminance differs from ``background_lum`` by at least _MIN_CONTRAST."""
    for _ in range(20):
        colour = rng.uniform(0, 255, 3)
        if abs(float(_luminance(colour)) - background_lum) >= _MIN_CONTRAST:
            return colour
    return np.full(3, 0.0 if background_lum > 127.5 else 255.0)


def _place_polygon(
    rng: np.random.Generator, p: ShapesParams, name: str, height: int, width: int
) -> np.ndarray:
    """``[V, 2]`` vertices of a randomly sized, rotated and placed shape lying inside the image."""
    hi = min(p.max_object_size, min(height, width) - 2)
    lo = min(p.min_object_size, hi)
    diameter = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    theta = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    poly = _UNIT_SHAPES[name] @ rot.T * (diameter / 2)
    lo_xy, hi_xy = poly.min(axis=0), poly.max(axis=0)
    centre = rng.uniform(-lo_xy, np.array([width, height]) - hi_xy)
    return np.round(poly + centre, 2)


def _overlaps(box: np.ndarray, boxes: list[np.ndarray], max_overlap: float) -> bool:
    """Whether xyxy ``box`` intersects any of ``boxes`` by more than ``max_overlap`` of the smaller one."""
    if not boxes:
        return False
    others = np.stack(boxes)
    wh = np.clip(np.minimum(box[2:], others[:, 2:]) - np.maximum(box[:2], others[:, :2]), 0, None)
    inter = wh[:, 0] * wh[:, 1]
    areas = np.prod(others[:, 2:] - others[:, :2], axis=1)
    smaller = np.minimum(areas, np.prod(box[2:] - box[:2]))
    return bool(np.any(inter > max_overlap * smaller))


def _polygon_area(poly: np.ndarray) -> float:
    x, y = poly[:, 0], poly[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def _draw_image(rng: np.random.Generator, p: ShapesParams) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """Draws one image; returns ``uint8 [H, W, 3]`` and ``(class index, [V, 2] polygon)`` per object."""
    height, width = (int(v) for v in rng.integers(p.min_image_size, p.max_image_size + 1, 2))
    canvas = _background(rng, height, width)
    objects: list[tuple[int, np.ndarray]] = []
    boxes: list[np.ndarray] = []
    for _ in range(int(rng.integers(1, p.max_objects + 1))):
        for _attempt in range(20):
            cls = int(rng.integers(len(SHAPE_CLASSES)))
            poly = _place_polygon(rng, p, SHAPE_CLASSES[cls], height, width)
            box = np.concatenate((poly.min(axis=0), poly.max(axis=0)))
            if not _overlaps(box, boxes, p.max_overlap):
                break
        else:
            continue
        rle = mask_utils.frPyObjects([poly.ravel().tolist()], height, width)
        x1, y1, x2, y2 = np.floor(box[:2]).astype(int).tolist() + np.ceil(box[2:]).astype(int).tolist()
        region = canvas[y1:y2, x1:x2]  # a view: only the object's box is painted
        mask = mask_utils.decode(rle)[y1:y2, x1:x2, 0].view(bool)
        colour = np.rint(_contrasting_colour(rng, float(_luminance(region.reshape(-1, 3).mean(axis=0)))))
        np.copyto(region, colour.astype(np.uint8), where=mask[..., None])
        objects.append((cls, poly))
        boxes.append(box)
    return canvas, objects


def _annotation(ann_id: int, image_id: int, cls: int, poly: np.ndarray) -> dict[str, Any]:
    x1, y1 = poly.min(axis=0)
    x2, y2 = poly.max(axis=0)
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": cls + 1,
        "segmentation": [poly.ravel().tolist()],
        "area": round(_polygon_area(poly), 2),
        "bbox": [float(x1), float(y1), round(float(x2 - x1), 2), round(float(y2 - y1), 2)],
        "iscrowd": 0,
    }


def _write_split(out_dir: Path, split: str, count: int, p: ShapesParams) -> None:
    img_dir = out_dir / split
    img_dir.mkdir(parents=True, exist_ok=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for i in range(count):
        rng = np.random.default_rng([p.seed, SPLITS.index(split), i])
        pixels, objects = _draw_image(rng, p)
        image_id = i + 1
        file_name = f"{image_id:06d}.jpg"
        Image.fromarray(pixels).save(img_dir / file_name, format="JPEG", quality=p.jpeg_quality)
        height, width = pixels.shape[:2]
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
        for cls, poly in objects:
            annotations.append(_annotation(len(annotations) + 1, image_id, cls, poly))
    coco = {
        "info": {"description": f"lightdet synthetic shapes, {split} split", "version": "1.0"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(SHAPE_CLASSES)
        ],
    }
    (out_dir / "annotations").mkdir(parents=True, exist_ok=True)
    (out_dir / "annotations" / f"{split}.json").write_text(json.dumps(coco, separators=(",", ":")))


def make_shapes(
    out_dir: str | PathLike,
    *,
    num_train: int = 1500,
    num_val: int = 200,
    seed: int = 0,
    min_image_size: int = 112,
    max_image_size: int = 144,
    min_object_size: int = 16,
    max_object_size: int = 80,
    max_objects: int = 6,
    max_overlap: float = 0.15,
    jpeg_quality: int = 90,
) -> Path:
    """Writes the synthetic shapes dataset (both splits) into ``out_dir``.

    The arguments are the fields of :class:`ShapesParams` (see there); the defaults give about
    1500 + 200 images of 112-144 px with 1-6 objects of 16-80 px, written in a few seconds.

    Args:
        out_dir: destination folder (created; existing files with the same names are overwritten).

    Returns:
        ``out_dir`` as a Path.

    Raises:
        ValueError: for inconsistent parameters (e.g. objects larger than the images).
    """
    p = ShapesParams(
        num_train=num_train,
        num_val=num_val,
        seed=seed,
        min_image_size=min_image_size,
        max_image_size=max_image_size,
        min_object_size=min_object_size,
        max_object_size=max_object_size,
        max_objects=max_objects,
        max_overlap=max_overlap,
        jpeg_quality=jpeg_quality,
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for split, count in zip(SPLITS, (p.num_train, p.num_val)):
        start = time.perf_counter()
        _write_split(out, split, count, p)
        seconds = time.perf_counter() - start
        logger.info("shapes: wrote %d %s images to %s in %.1f s", count, split, out, seconds)
    info = {"generator": "lightdet.data.make_shapes", "params": asdict(p)}
    (out / _PARAMS_FILE).write_text(json.dumps(info))
    return out


def _is_complete(root: Path) -> bool:
    return all((root / f).is_file() for f in (_PARAMS_FILE, "annotations/train.json", "annotations/val.json"))


def _warn_if_different(root: Path, wanted: ShapesParams) -> None:
    stored = json.loads((root / _PARAMS_FILE).read_text())["params"]
    diff = {k: (stored.get(k), v) for k, v in asdict(wanted).items() if stored.get(k) != v}
    if diff:
        logger.warning(
            "shapes dataset %s was generated with other parameters (existing, requested): %s; using the "
            "existing data. Delete the folder to regenerate it.",
            root,
            diff,
        )


def ensure_shapes(root: str | PathLike, **params: Any) -> Path:
    """Generates the shapes dataset into ``root`` unless it is already there; returns ``root``.

    Safe when several processes (DDP ranks, dataset factories) call it together: each one writes into
    its own temporary folder beside ``root`` and renames it into place atomically; the first rename
    wins and the others discard their copy. ``root`` therefore never holds a partial dataset.

    Args:
        root: the dataset folder.
        **params: see :func:`make_shapes`. When ``root`` exists and was made with other parameters, a
            warning names the differences and the existing data is used.

    Raises:
        FileExistsError: when ``root`` is a non-empty folder that is not a complete shapes dataset.
    """
    root = Path(root)
    wanted = ShapesParams(**params)
    if _is_complete(root):
        _warn_if_different(root, wanted)
        return root
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(
            f"{root} exists but is not a complete shapes dataset ({_PARAMS_FILE}, annotations/train.json "
            "and annotations/val.json expected): remove it or point dataset.data_root elsewhere"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    logger.info("shapes: generating the synthetic dataset into %s (once)", root)
    try:
        make_shapes(tmp, **asdict(wanted))
        try:
            os.replace(tmp, root)  # atomic; fails when another process has already put its copy there
        except OSError:
            if not _is_complete(root):
                raise
            logger.info("shapes: %s was completed by another process meanwhile", root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root

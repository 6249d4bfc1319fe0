"""The synthetic shapes dataset: a ``CocoDataset`` generated on first use (lightdet-train's default)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path
from typing import Any, Literal

from lightdet.categories import ClassesSpec
from lightdet.data.datasets.base import BadImagePolicy
from lightdet.data.datasets.coco import CocoDataset
from lightdet.data.image_cache import CacheMode
from lightdet.data.sources import AnnotationSource
from lightdet.data.synthetic import SPLITS, ensure_shapes
from lightdet.data.transforms import Transform
from lightdet.structures import DetSample

__all__ = ["ShapesDataset", "shapes_dataset"]


def _split_files(root: str | PathLike, split: str, num_train: int, num_val: int, seed: int) -> tuple[Path, Path]:
    """Generates the dataset if needed; returns the split's annotation file and image folder."""
    if split not in SPLITS:
        raise ValueError(f"ShapesDataset: split must be one of {SPLITS}, got {split!r}")
    path = ensure_shapes(root, num_train=num_train, num_val=num_val, seed=seed)
    return path / "annotations" / f"{split}.json", path / split


class ShapesDataset(CocoDataset):
    """One split of the shapes dataset, generated into ``root`` if needed.

    Args:
        root: the dataset folder (see :func:`lightdet.data.ensure_shapes`; safe under DDP).
        split: ``"train"`` or ``"val"``: ``root/annotations/{split}.json`` with the images in ``root/{split}``.
        pipeline, classes, num_classes, with_mask, filter_empty, on_bad_image, cache: as for :class:`CocoDataset`.
        num_train, num_val, seed: generator parameters (used only when the data is generated; a
            mismatch with existing data is logged as a warning).
    """

    def __init__(
        self,
        root: str | PathLike,
        split: Literal["train", "val"],
        *,
        pipeline: Callable[[Any], DetSample] | Sequence[Transform] | None = None,
        classes: ClassesSpec | None = None,
        num_classes: int | None = None,
        with_mask: bool = False,
        filter_empty: bool = False,
        num_train: int = 1500,
        num_val: int = 200,
        seed: int = 0,
        on_bad_image: BadImagePolicy = "error",
        cache: CacheMode | None = None,
    ) -> None:
        ann_file, img_dir = _split_files(root, split, num_train, num_val, seed)
        super().__init__(
            ann_file,
            img_dir,
            classes=classes,
            pipeline=pipeline,
            filter_empty=filter_empty,
            with_mask=with_mask,
            num_classes=num_classes,
            on_bad_image=on_bad_image,
            cache=cache,
        )

    @classmethod
    def annotation_sources(  # type: ignore[override]
        cls,
        root: str | PathLike,
        split: Literal["train", "val"],
        *,
        classes: ClassesSpec | None = None,
        num_train: int = 1500,
        num_val: int = 200,
        seed: int = 0,
        **_: Any,
    ) -> list[AnnotationSource]:
        """The split's COCO file, generated first when missing (see :mod:`lightdet.data.sources`)."""
        ann_file, img_dir = _split_files(root, split, num_train, num_val, seed)
        return super().annotation_sources(ann_file, img_dir, classes=classes)


shapes_dataset = ShapesDataset
"""The name configs used before the class; kept for existing configs, checkpoints and calls."""

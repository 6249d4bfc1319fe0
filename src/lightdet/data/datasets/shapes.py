"""The synthetic shapes dataset as a ``CocoDataset``, generated on first use (lightdet-train's default)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from os import PathLike
from typing import Any, Literal

from lightdet.data.classes import ClassesSpec
from lightdet.data.datasets.coco import CocoDataset
from lightdet.data.synthetic import SPLITS, ensure_shapes
from lightdet.data.transforms import Transform
from lightdet.structures import DetSample

__all__ = ["shapes_dataset"]


def shapes_dataset(
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
) -> CocoDataset:
    """Generates the shapes dataset into ``root`` if needed, then returns one split of it.

    Args:
        root: the dataset folder (see :func:`lightdet.data.ensure_shapes`; safe under DDP).
        split: ``"train"`` or ``"val"``.
        pipeline, classes, num_classes, with_mask, filter_empty: as for :class:`CocoDataset`.
        num_train, num_val, seed: generator parameters (used only when the data is generated; a
            mismatch with existing data is logged as a warning).

    Returns:
        ``CocoDataset(root/annotations/{split}.json, root/{split}, ...)``.
    """
    if split not in SPLITS:
        raise ValueError(f"shapes_dataset: split must be one of {SPLITS}, got {split!r}")
    path = ensure_shapes(root, num_train=num_train, num_val=num_val, seed=seed)
    return CocoDataset(
        path / "annotations" / f"{split}.json",
        path / split,
        classes=classes,
        pipeline=pipeline,
        filter_empty=filter_empty,
        with_mask=with_mask,
        num_classes=num_classes,
    )

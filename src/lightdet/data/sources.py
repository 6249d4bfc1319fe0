"""Which annotation files a dataset config reads, without building the datasets (for the tools).

A node is a plain mapping as Hydra composes it (``_target_`` plus constructor arguments, resolved).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightdet.data.synthetic import ensure_shapes

__all__ = ["AnnotationSource", "annotation_sources"]


@dataclass(frozen=True)
class AnnotationSource:
    """One annotation file, its image folder (VOC: the year folder) and the configured classes."""

    ann_file: str
    img_dir: str | None
    classes: Any


def _shapes(node: Mapping[str, Any]) -> AnnotationSource:
    keys = ("num_train", "num_val", "seed")
    root = ensure_shapes(node["root"], **{k: node[k] for k in keys if k in node})
    split = node["split"]
    return AnnotationSource(str(root / "annotations" / f"{split}.json"), str(root / split), node.get("classes"))


def annotation_sources(node: Mapping[str, Any]) -> list[AnnotationSource]:
    """The annotation files behind a dataset node, looking through wrappers.

    Understands lightdet's ``CocoDataset``, ``MiddleDataset``, ``VocDataset``, ``shapes_dataset`` (generated
    when missing) and the ``RepeatDataset`` / ``ClassBalancedDataset`` / ``ConcatDataset`` wrappers.

    Raises:
        ValueError: for another ``_target_``, naming it.
    """
    target = str(node.get("_target_", ""))
    kind = target.rsplit(".", 1)[-1]
    if kind in ("CocoDataset", "MiddleDataset", "dataset_from_file"):
        return [AnnotationSource(str(node["ann_file"]), node.get("img_dir"), node.get("classes"))]
    if kind == "VocDataset":
        root = node.get("root") or str(Path(node["ann_file"]).parents[2])
        return [AnnotationSource(str(node["ann_file"]), str(root), node.get("classes"))]
    if kind == "shapes_dataset":
        return [_shapes(node)]
    if kind in ("RepeatDataset", "ClassBalancedDataset"):
        return annotation_sources(node["dataset"])
    if kind == "ConcatDataset":
        return [s for child in node["datasets"] for s in annotation_sources(child)]
    raise ValueError(
        f"cannot tell which annotation file a dataset of `_target_: {target}` reads; check its annotation file "
        "directly: lightdet-data check PATH/TO/ann.json --img-dir PATH/TO/images"
    )

"""Datasets, transforms, samplers, collate and the LightningDataModule.

files --dataset--> ImageRecord --pipeline (LoadImage, Resize, ...)--> DetSample --DetBatch.collate--> DetBatch

The public names are loaded on first access (PEP 562), so that ``lightdet.data.synthetic`` or
``lightdet.data.classes`` can be imported by light tools (``lightdet-data make-shapes``, the config
resolvers) without importing Lightning, torchvision and albumentations.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lightdet.data.affine import RandomAffine
    from lightdet.data.albu import Albu
    from lightdet.data.augment import (
        Pad,
        RandomCrop,
        RandomIoUCrop,
        RandomResize,
        RandomZoomOut,
        SanitizeBoundingBoxes,
    )
    from lightdet.data.classes import load_class_names, match_categories
    from lightdet.data.datamodule import DetDataModule
    from lightdet.data.datasets import CocoDataset, RecordDataset, ShapesDataset, shapes_dataset
    from lightdet.data.datasets.files import dataset_from_file
    from lightdet.data.datasets.middle import MiddleDataset
    from lightdet.data.datasets.voc import VOC_CLASSES, VocDataset
    from lightdet.data.datasets.wrappers import (
        ClassBalancedDataset,
        ConcatDataset,
        MultiImageMixDataset,
        RepeatDataset,
        set_pipeline,
    )
    from lightdet.data.mix import CopyPaste, MixUp, Mosaic
    from lightdet.data.photometric import RandomHSV, RandomPhotometricDistort
    from lightdet.data.records import ImageRecord, RecordStore, decode_masks
    from lightdet.data.samplers import GroupedBatchSampler, aspect_ratio_group_ids, repeat_factors
    from lightdet.data.sources import AnnotationSource, CocoGroundTruth, annotation_sources
    from lightdet.data.synthetic import SHAPE_CLASSES, ShapesParams, ensure_shapes, make_shapes
    from lightdet.data.transforms import (
        Compose,
        LoadImage,
        RandomFlip,
        Resize,
        Transform,
        read_image,
        rescale_size,
    )

_MODULE_OF = {
    "RandomAffine": "affine",
    "Albu": "albu",
    "Pad": "augment",
    "RandomCrop": "augment",
    "RandomIoUCrop": "augment",
    "RandomResize": "augment",
    "RandomZoomOut": "augment",
    "SanitizeBoundingBoxes": "augment",
    "MultiImageMixDataset": "datasets.wrappers",
    "set_pipeline": "datasets.wrappers",
    "CopyPaste": "mix",
    "MixUp": "mix",
    "Mosaic": "mix",
    "RandomHSV": "photometric",
    "RandomPhotometricDistort": "photometric",
    "load_class_names": "classes",
    "match_categories": "classes",
    "DetDataModule": "datamodule",
    "CocoDataset": "datasets",
    "RecordDataset": "datasets",
    "ShapesDataset": "datasets",
    "shapes_dataset": "datasets",
    "VOC_CLASSES": "datasets",
    "ClassBalancedDataset": "datasets",
    "ConcatDataset": "datasets",
    "MiddleDataset": "datasets",
    "RepeatDataset": "datasets",
    "VocDataset": "datasets",
    "dataset_from_file": "datasets",
    "repeat_factors": "samplers",
    "ImageRecord": "records",
    "RecordStore": "records",
    "decode_masks": "records",
    "GroupedBatchSampler": "samplers",
    "aspect_ratio_group_ids": "samplers",
    "AnnotationSource": "sources",
    "CocoGroundTruth": "sources",
    "annotation_sources": "sources",
    "SHAPE_CLASSES": "synthetic",
    "ShapesParams": "synthetic",
    "ensure_shapes": "synthetic",
    "make_shapes": "synthetic",
    "Compose": "transforms",
    "LoadImage": "transforms",
    "RandomFlip": "transforms",
    "Resize": "transforms",
    "Transform": "transforms",
    "read_image": "transforms",
    "rescale_size": "transforms",
}

__all__ = [
    "Albu",
    "AnnotationSource",
    "annotation_sources",
    "aspect_ratio_group_ids",
    "CocoDataset",
    "CocoGroundTruth",
    "Compose",
    "decode_masks",
    "DetDataModule",
    "ensure_shapes",
    "GroupedBatchSampler",
    "ImageRecord",
    "load_class_names",
    "LoadImage",
    "make_shapes",
    "match_categories",
    "RandomFlip",
    "read_image",
    "RecordDataset",
    "RecordStore",
    "rescale_size",
    "Resize",
    "SHAPE_CLASSES",
    "ShapesDataset",
    "shapes_dataset",
    "ShapesParams",
    "Transform",
    "VOC_CLASSES",
    "ClassBalancedDataset",
    "ConcatDataset",
    "MiddleDataset",
    "RepeatDataset",
    "VocDataset",
    "dataset_from_file",
    "repeat_factors",
    "CopyPaste",
    "MixUp",
    "Mosaic",
    "MultiImageMixDataset",
    "Pad",
    "RandomAffine",
    "RandomCrop",
    "RandomHSV",
    "RandomIoUCrop",
    "RandomPhotometricDistort",
    "RandomResize",
    "RandomZoomOut",
    "SanitizeBoundingBoxes",
    "set_pipeline",
]


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'lightdet.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"lightdet.data.{_MODULE_OF[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

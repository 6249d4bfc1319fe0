"""Datasets: annotation files -> :class:`~lightdet.data.records.ImageRecord` -> pipeline -> DetSample."""

from lightdet.data.datasets.base import RecordDataset
from lightdet.data.datasets.coco import CocoDataset
from lightdet.data.datasets.files import dataset_from_file, detect_format
from lightdet.data.datasets.middle import MiddleDataset, middle_as_coco, read_middle
from lightdet.data.datasets.shapes import ShapesDataset, shapes_dataset
from lightdet.data.datasets.voc import (
    VOC_CLASSES,
    VocDataset,
    parse_voc_xml,
    read_voc_split,
    voc_as_coco,
    voc_image_ids,
)
from lightdet.data.datasets.wrappers import ClassBalancedDataset, ConcatDataset, RepeatDataset

__all__ = [
    "VOC_CLASSES",
    "ClassBalancedDataset",
    "CocoDataset",
    "ConcatDataset",
    "MiddleDataset",
    "RecordDataset",
    "RepeatDataset",
    "ShapesDataset",
    "VocDataset",
    "dataset_from_file",
    "detect_format",
    "middle_as_coco",
    "parse_voc_xml",
    "read_middle",
    "read_voc_split",
    "shapes_dataset",
    "voc_as_coco",
    "voc_image_ids",
]

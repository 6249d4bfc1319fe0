"""Datasets: annotation files -> :class:`~lightdet.data.records.ImageRecord` -> pipeline -> DetSample."""

from lightdet.data.datasets.base import RecordDataset
from lightdet.data.datasets.coco import CocoDataset
from lightdet.data.datasets.files import dataset_from_file, detect_format
from lightdet.data.datasets.middle import MiddleDataset, read_middle
from lightdet.data.datasets.shapes import shapes_dataset
from lightdet.data.datasets.voc import VOC_CLASSES, VocDataset, parse_voc_xml, read_voc_split, voc_image_ids
from lightdet.data.datasets.wrappers import ClassBalancedDataset, ConcatDataset, RepeatDataset

__all__ = [
    "VOC_CLASSES",
    "ClassBalancedDataset",
    "CocoDataset",
    "ConcatDataset",
    "MiddleDataset",
    "RecordDataset",
    "RepeatDataset",
    "VocDataset",
    "dataset_from_file",
    "detect_format",
    "parse_voc_xml",
    "read_middle",
    "read_voc_split",
    "shapes_dataset",
    "voc_image_ids",
]

"""Datasets: annotation files -> :class:`~lightdet.data.records.ImageRecord` -> pipeline -> DetSample."""

from lightdet.data.datasets.coco import CocoDataset
from lightdet.data.datasets.shapes import shapes_dataset

__all__ = ["CocoDataset", "shapes_dataset"]

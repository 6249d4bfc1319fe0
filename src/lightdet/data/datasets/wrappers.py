"""Dataset wrappers: repetition, class-balanced repetition and concatenation.

Each wrapper exposes what :class:`~lightdet.data.DetDataModule` and the tools use from a dataset:
``class_names``, ``num_classes``, ``aspect_ratios()`` (aspect-ratio grouping), ``get_record(i)`` and
``class_sets()``, and forwards the tools' ``annotation_sources`` to the wrapped dataset nodes
(:mod:`lightdet.data.sources`). Repetition lives in the index space of the dataset, so every sampler, including the
``DistributedSampler`` that Lightning adds under DDP, sees the repeated images as ordinary ones.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from lightdet.data import sources
from lightdet.data.records import ImageRecord
from lightdet.data.samplers import repeat_factors
from lightdet.data.sources import AnnotationSource
from lightdet.structures import DetSample

__all__ = ["RepeatDataset", "ClassBalancedDataset", "ConcatDataset"]

def _require(dataset: Any, attrs: Sequence[str], wrapper: str) -> None:
    missing = [a for a in attrs if not hasattr(dataset, a)]
    if missing:
        raise TypeError(f"{wrapper}: {type(dataset).__name__} lacks {missing}; wrap a lightdet dataset")

class _IndexedWrapper(Dataset[DetSample]):
    """A view of ``dataset`` through ``indices`` (``int64 [M]`` positions into it)."""

    def __init__(self, dataset: Any, indices: np.ndarray) -> None:
        _require(dataset, ("class_names", "aspect_ratios", "get_record"), type(self).__name__)
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        self.class_names = list(dataset.class_names)
        self.num_classes = len(self.class_names)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> DetSample:
        return self.dataset[int(self.indices[index])]

    def get_record(self, index: int) -> ImageRecord:
        return self.dataset.get_record(int(self.indices[index]))

    def aspect_ratios(self) -> np.ndarray:
        return np.asarray(self.dataset.aspect_ratios())[self.indices]

    def class_sets(self) -> list[np.ndarray]:
        inner = self.dataset.class_sets()
        return [inner[i] for i in self.indices]

    @classmethod
    def annotation_sources(cls, dataset: Mapping[str, Any], **_: Any) -> list[AnnotationSource]:
        """The wrapped dataset node's files (see :mod:`lightdet.data.sources`)."""
        return sources.annotation_sources(dataset)

class RepeatDataset(_IndexedWrapper):
    """``dataset`` repeated ``times`` times (MMDetection's ``RepeatDataset``): fewer, longer epochs.

    Index ``i`` is image ``i % len(dataset)``.
    """

    def __init__(self, dataset: Any, times: int) -> None:
        if int(times) < 1:
            raise ValueError(f"RepeatDataset: times must be >= 1, got {times}")
        self.times = int(times)
        super().__init__(dataset, np.tile(np.arange(len(dataset), dtype=np.int64), self.times))

    def __repr__(self) -> str:
        return f"RepeatDataset({self.dataset!r}, times={self.times})"

class ClassBalancedDataset(_IndexedWrapper):
    """Repeats images of rare classes (LVIS's repeat factor sampling, MMDetection's ``ClassBalancedDataset``).

    Image ``i`` appears ``ceil(r_i)`` times per epoch, ``r_i`` from
    :func:`~lightdet.data.samplers.repeat_factors` over its non-ignored labels; indices stay in
    dataset order (the sampler shuffles).

    Args:
        dataset: a lightdet dataset (it needs ``class_sets()``).
        oversample_thr: classes in fewer than this fraction of the images are oversampled.

    Attributes:
        repeat_factors: ``float64 [len(dataset)]`` the factors before rounding up.
    """

    def __init__(self, dataset: Any, oversample_thr: float) -> None:
        _require(dataset, ("class_sets",), "ClassBalancedDataset")
        self.oversample_thr = float(oversample_thr)
        self.repeat_factors = repeat_factors(dataset.class_sets(), self.oversample_thr)
        counts = np.ceil(self.repeat_factors).astype(np.int64)
        super().__init__(dataset, np.repeat(np.arange(len(dataset), dtype=np.int64), counts))

    def __repr__(self) -> str:
        return f"ClassBalancedDataset({self.dataset!r}, oversample_thr={self.oversample_thr}, {len(self)} items)"

class ConcatDataset(Dataset[DetSample]):
    """Datasets with the same classes, one after another (e.g. VOC 2007 + 2012 trainval).

    Raises:
        ValueError: when the datasets' ``class_names`` differ (naming both lists), or none is given.
    """

    def __init__(self, datasets: Sequence[Any]) -> None:
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: needs at least one dataset")
        for ds in self.datasets:
            _require(ds, ("class_names", "aspect_ratios", "get_record"), "ConcatDataset")
        self.class_names = list(self.datasets[0].class_names)
        for i, ds in enumerate(self.datasets[1:], start=1):
            if list(ds.class_names) != self.class_names:
                raise ValueError(
                    f"ConcatDataset: dataset {i} ({ds!r}) has classes {list(ds.class_names)} but dataset 0 has "
                    f"{self.class_names}; labels would mean different classes. Configure the same `classes` "
                    "(names and order) for every dataset"
                )
        self.num_classes = len(self.class_names)
        self.cumulative_sizes = np.cumsum([len(ds) for ds in self.datasets]).tolist()

    def locate(self, index: int) -> tuple[int, int]:
        """``index`` -> ``(dataset number, index within that dataset)``."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"ConcatDataset: index {index} out of range for {len(self)} images")
        index %= len(self)
        d = bisect.bisect_right(self.cumulative_sizes, index)
        return d, index - (self.cumulative_sizes[d - 1] if d else 0)

    def __len__(self) -> int:
        return self.cumulative_sizes[-1]

    def __getitem__(self, index: int) -> DetSample:
        d, i = self.locate(index)
        return self.datasets[d][i]

    def get_record(self, index: int) -> ImageRecord:
        d, i = self.locate(index)
        return self.datasets[d].get_record(i)

    def aspect_ratios(self) -> np.ndarray:
        return np.concatenate([np.asarray(ds.aspect_ratios(), dtype=np.float64) for ds in self.datasets])

    def class_sets(self) -> list[np.ndarray]:
        return [s for ds in self.datasets for s in ds.class_sets()]

    @classmethod
    def annotation_sources(cls, datasets: Sequence[Mapping[str, Any]], **_: Any) -> list[AnnotationSource]:
        """Every dataset node's files, in order (see :mod:`lightdet.data.sources`)."""
        return [src for node in datasets for src in sources.annotation_sources(node)]

    def __repr__(self) -> str:
        return f"ConcatDataset({len(self.datasets)} datasets, {len(self)} images, classes={self.class_names})"


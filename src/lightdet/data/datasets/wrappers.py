"""Dataset wrappers: repetition, class-balanced repetition, concatenation and multi-image mixing.

Each wrapper exposes what :class:`~lightdet.data.DetDataModule` and the tools use from a dataset:
``class_names``, ``num_classes``, ``aspect_ratios()`` (aspect-ratio grouping), ``get_record(i)`` and
``class_sets()``, and forwards the tools' ``annotation_sources`` to the wrapped dataset nodes
(:mod:`lightdet.data.sources`). Repetition lives in the index space of the dataset, so every sampler, including the
``DistributedSampler`` that Lightning adds under DDP, sees the repeated images as ordinary ones.

:func:`set_pipeline` changes the pipeline of a dataset, through any wrappers (the datamodule's
pipeline switch uses it).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from lightdet.data import sources
from lightdet.data.datasets.base import PipelineSpec, build_pipeline
from lightdet.data.mix import MixStep
from lightdet.data.records import ImageRecord
from lightdet.data.samplers import repeat_factors
from lightdet.data.sources import AnnotationSource
from lightdet.data.streams import chance, randint
from lightdet.data.transforms import LoadImage
from lightdet.structures import DetSample

__all__ = ["RepeatDataset", "ClassBalancedDataset", "ConcatDataset", "MultiImageMixDataset", "set_pipeline"]


def set_pipeline(dataset: Any, pipeline: PipelineSpec) -> None:
    """Makes ``dataset`` run ``pipeline`` from now on.

    A wrapper passes it to the datasets it wraps (:class:`MultiImageMixDataset` takes it as its own
    steps); a dataset with a ``pipeline`` attribute (every :class:`~lightdet.data.RecordDataset`) gets it
    built by :func:`~lightdet.data.datasets.base.build_pipeline`.

    Raises:
        TypeError: for a dataset with neither ``set_pipeline`` nor ``pipeline``.
    """
    setter = getattr(dataset, "set_pipeline", None)
    if callable(setter):
        setter(pipeline)
    elif hasattr(dataset, "pipeline"):
        dataset.pipeline = build_pipeline(pipeline)
    else:
        raise TypeError(
            f"cannot change the pipeline of {type(dataset).__name__}: it has neither set_pipeline() nor a "
            "`pipeline` attribute"
        )


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

    def set_pipeline(self, pipeline: PipelineSpec) -> None:
        """Gives the wrapped dataset ``pipeline`` (:func:`set_pipeline`)."""
        set_pipeline(self.dataset, pipeline)

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

    def set_pipeline(self, pipeline: PipelineSpec) -> None:
        """Gives every dataset ``pipeline`` (:func:`set_pipeline`)."""
        for ds in self.datasets:
            set_pipeline(ds, pipeline)

    @classmethod
    def annotation_sources(cls, datasets: Sequence[Mapping[str, Any]], **_: Any) -> list[AnnotationSource]:
        """Every dataset node's files, in order (see :mod:`lightdet.data.sources`)."""
        return [src for node in datasets for src in sources.annotation_sources(node)]

    def __repr__(self) -> str:
        return f"ConcatDataset({len(self.datasets)} datasets, {len(self)} images, classes={self.class_names})"


class MultiImageMixDataset(_IndexedWrapper):
    """Runs ``pipeline`` on ``dataset``'s samples, handing multi-image steps other images of the dataset.

    MMDetection's ``MultiImageMixDataset`` (YOLOX's recipe). ``dataset`` loads each image with its own
    pipeline (typically ``[LoadImage]``, its default); ``pipeline`` then runs on the ``DetSample``. A
    step of the :class:`~lightdet.data.mix.MixStep` kind (Mosaic, MixUp, CopyPaste) is applied with its
    ``prob`` through its ``mix``, with ``num_others`` images drawn uniformly from the dataset and loaded
    by the dataset's pipeline (not by the steps before it, as in MMDetection); its cache is unused.
    Other steps are called as usual. Draws come from the augmentation stream
    (:mod:`lightdet.data.streams`).

    Args:
        dataset: a lightdet dataset.
        pipeline: ``DetSample -> DetSample`` steps (``LoadImage`` belongs to ``dataset``).
        max_refetch: an image without boxes is drawn again, up to this many times, for a step whose
            ``others_need_boxes`` (MixUp, CopyPaste).
    """

    def __init__(self, dataset: Any, pipeline: Sequence[Callable[[DetSample], DetSample]], max_refetch: int = 15):
        super().__init__(dataset, np.arange(len(dataset), dtype=np.int64))
        self.max_refetch = int(max_refetch)
        self.set_pipeline(pipeline)

    def set_pipeline(self, pipeline: PipelineSpec) -> None:
        """Replaces the steps run after the wrapped dataset's own pipeline (a list of steps)."""
        if pipeline is None or callable(pipeline):
            raise TypeError(f"MultiImageMixDataset: the pipeline must be a list of steps, got {pipeline!r}")
        steps = list(pipeline)
        for step in steps:
            if isinstance(step, LoadImage):
                raise ValueError(
                    "MultiImageMixDataset: its pipeline runs on loaded samples; LoadImage belongs to the wrapped "
                    "dataset's own pipeline (its default)"
                )
            if not callable(step):
                raise TypeError(f"MultiImageMixDataset: pipeline step {step!r} is not callable")
        self.steps = steps

    def _other(self, need_boxes: bool) -> DetSample:
        index = randint(0, len(self.dataset) - 1)
        for _ in range(self.max_refetch if need_boxes else 0):
            if len(self.dataset.get_record(index)):
                break
            index = randint(0, len(self.dataset) - 1)
        return self.dataset[index]

    def __getitem__(self, index: int) -> DetSample:
        sample = self.dataset[int(self.indices[index])]
        for step in self.steps:
            if not isinstance(step, MixStep):
                sample = step(sample)
            elif chance(step.prob):
                sample = step.mix(sample, [self._other(step.others_need_boxes) for _ in range(step.num_others)])
        return sample

    def __repr__(self) -> str:
        return f"MultiImageMixDataset({self.dataset!r}, {len(self.steps)} steps)"

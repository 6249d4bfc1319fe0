"""What every lightdet dataset shares: parsed records in a :class:`RecordStore`, a pipeline, class names."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch.utils.data import Dataset

from lightdet.data.image_cache import CacheMode, ImageCache, build_image_cache, check_cache_mode
from lightdet.data.image_io import BadImageError
from lightdet.data.records import ImageRecord, RecordStore
from lightdet.data.transforms import Compose, LoadImage, Transform
from lightdet.structures import DetSample, SkippedImage

__all__ = ["BadImagePolicy", "RecordDataset", "PipelineSpec", "build_pipeline"]

BadImagePolicy = Literal["error", "skip"]
"""What a dataset does with an image it cannot load: ``"error"`` stops, ``"skip"`` loads another one instead
and records the skipped image in the sample's ``meta.skipped`` (the run lists them in ``summary.json``)."""

_MAX_TRIES = 16  # images tried for one index under "skip" before the dataset gives up
_SKIP_HINT = "; dataset.on_bad_image=skip would skip it (skipped images are listed in summary.json)"

PipelineSpec = Callable[[Any], DetSample] | Sequence[Transform] | None
"""A dataset's ``pipeline`` argument: a callable, a list of transforms, or None for ``[LoadImage()]``."""


_PATH_HINT = (
    "In lightdet's configs it derives from `dataset.data_root` (by default ${paths.data_dir}/<dataset "
    "name>, and paths.data_dir defaults to $LIGHTDET_DATA or ./data): set dataset.data_root=... or "
    "paths.data_dir=... on the command line."
)


def require_path(path: Path, what: str, arg: str, owner: str) -> None:
    """Raises ``FileNotFoundError`` naming ``owner``, ``what``, the path and the argument when it is missing."""
    if not path.exists():
        raise FileNotFoundError(f"{owner}: {what} {str(path)!r} does not exist (argument `{arg}`). {_PATH_HINT}")


def build_pipeline(pipeline: PipelineSpec) -> Callable[[Any], Any]:
    """``None`` -> ``LoadImage()``; a list of transforms -> :class:`Compose`; a callable as is."""
    if pipeline is None:
        return Compose([LoadImage()])
    return pipeline if callable(pipeline) else Compose(list(pipeline))


class RecordDataset(Dataset[DetSample]):
    """A list of :class:`ImageRecord` run through a pipeline; the base of the file-format datasets.

    Subclasses parse their files and call :meth:`_set_records` once.

    Attributes:
        class_names: ``K`` names in label order. num_classes: ``K``.
        source: what the records were read from (named in error messages).
        image_cache: the decoded images kept for the run (``cache="ram"`` / ``"disk"``, see
            :mod:`lightdet.data.image_cache`), or None.
    """

    class_names: list[str]
    source: str
    on_bad_image: BadImagePolicy = "error"
    image_cache: ImageCache | None = None

    def _set_records(
        self,
        records: Sequence[ImageRecord],
        pipeline: PipelineSpec,
        on_bad_image: BadImagePolicy = "error",
        cache: CacheMode | None = None,
    ) -> None:
        """Keeps ``records`` and builds ``pipeline``; with ``cache``, decodes the images into the cache now
        (the pipeline must start with :class:`~lightdet.data.LoadImage`, whose ``decode`` fills it)."""
        if on_bad_image not in ("error", "skip"):
            raise ValueError(f"{type(self).__name__}: on_bad_image must be 'error' or 'skip', got {on_bad_image!r}")
        cache = check_cache_mode(cache, type(self).__name__)
        self.num_classes = len(self.class_names)
        self._records = RecordStore(records)
        self._sizes = np.array([(r.width, r.height) for r in records], dtype=np.float64).reshape(-1, 2)
        self.pipeline = build_pipeline(pipeline)
        self.on_bad_image = on_bad_image
        if cache is not None:
            load = self._cache_loader(self.pipeline, cache)
            self.image_cache = build_image_cache(cache, records, load.decode, load.exif, self.describe())

    def _cache_loader(self, pipeline: Callable[[Any], Any], cache: CacheMode) -> LoadImage:
        """The pipeline's first step, which must be a ``LoadImage`` (it decodes what the cache keeps)."""
        first = pipeline.transforms[0] if isinstance(pipeline, Compose) and pipeline.transforms else None
        if not isinstance(first, LoadImage):
            raise ValueError(
                f"{self.describe()}: cache={cache!r} keeps the images LoadImage decodes; the pipeline must start "
                f"with lightdet.data.LoadImage, got {pipeline!r}"
            )
        return first

    def set_pipeline(self, pipeline: PipelineSpec) -> None:
        """Runs ``pipeline`` from now on (a pipeline switch); with an image cache, its ``LoadImage`` must
        decode the way the cache was filled (the same ``exif``)."""
        built = build_pipeline(pipeline)
        if self.image_cache is not None:
            load = self._cache_loader(built, self.image_cache.mode)
            if load.exif != self.image_cache.exif:
                raise ValueError(
                    f"{self.describe()}: the new pipeline reads images with exif={load.exif!r} but the image "
                    f"cache holds them read with exif={self.image_cache.exif!r}; use the same dataset.exif"
                )
        self.pipeline = built

    def get_record(self, index: int) -> ImageRecord:
        """The parsed annotations of image ``index`` (before the pipeline)."""
        return self._records[index]

    def aspect_ratios(self) -> np.ndarray:
        """``float64 [len(self)]``: width / height of every image, from the annotation file."""
        return self._sizes[:, 0] / self._sizes[:, 1]

    def class_sets(self) -> list[np.ndarray]:
        """Per image, the sorted distinct labels of its non-ignored boxes (``int64 [k_i]``)."""
        out = []
        for i in range(len(self)):
            record = self.get_record(i)
            out.append(np.unique(np.asarray(record.labels)[~np.asarray(record.ignore, dtype=bool)]))
        return out

    def __len__(self) -> int:
        return len(self._records)

    def __getitem__(self, index: int) -> DetSample:
        """Image ``index`` through the pipeline; under ``on_bad_image="skip"`` an image that cannot be loaded
        is replaced by another one, which names it in ``meta.skipped``.

        Raises:
            BadImageError: naming this dataset, the image id and the file (``"error"``), or when
                ``_MAX_TRIES`` images in a row cannot be loaded (``"skip"``).
        """
        skipped: list[SkippedImage] = []
        for candidate in self._candidates(index):
            try:
                sample = self._load(candidate)
            except BadImageError as err:
                if self.on_bad_image == "error":
                    raise err.located(dataset=self.describe(), hint=_SKIP_HINT) from None
                skipped.append(SkippedImage(err.image_id, err.file, self.describe(), err.reason))
                continue
            if not skipped:
                return sample
            return replace(sample, meta=replace(sample.meta, skipped=(*sample.meta.skipped, *skipped)))
        raise BadImageError(
            f"{self.describe()}: none of {len(skipped)} images tried in place of image index {index} could be "
            f"loaded (on_bad_image=skip); is the image folder right? The last: {skipped[-1].file_name} "
            f"{skipped[-1].reason}",
            file=skipped[-1].file_name, reason=skipped[-1].reason, dataset=self.describe(),
        )

    def _candidates(self, index: int) -> Iterator[int]:
        """``index``, then under "skip" other images drawn with a generator seeded by ``index`` (the same
        replacement every epoch, spread over the dataset so that a run of broken files is left behind)."""
        yield index
        rng = random.Random(index)
        for _ in range(_MAX_TRIES - 1):
            yield rng.randrange(len(self))

    def _load(self, index: int) -> DetSample:
        record = self.get_record(index)
        image = None if self.image_cache is None else self.image_cache.get(index, record)
        sample = self.pipeline(record if image is None else replace(record, image=image))
        if not isinstance(sample, DetSample):
            raise TypeError(
                f"the pipeline of {self.source} returned {type(sample).__name__}, not a DetSample: does "
                "it start with lightdet.data.LoadImage?"
            )
        return sample

    def describe(self) -> str:
        """The dataset in messages: its class and what it reads (``CocoDataset /data/ann.json``)."""
        return f"{type(self).__name__} {self.source}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r}, {len(self)} images, classes={self.class_names})"

"""What every lightdet dataset shares: parsed records in a :class:`RecordStore`, a pipeline, class names."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from lightdet.data.records import ImageRecord, RecordStore
from lightdet.data.transforms import Compose, LoadImage, Transform
from lightdet.structures import DetSample

__all__ = ["RecordDataset", "PipelineSpec", "build_pipeline"]

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
    """

    class_names: list[str]
    source: str

    def _set_records(self, records: Sequence[ImageRecord], pipeline: PipelineSpec) -> None:
        self.num_classes = len(self.class_names)
        self._records = RecordStore(records)
        self._sizes = np.array([(r.width, r.height) for r in records], dtype=np.float64).reshape(-1, 2)
        self.pipeline = build_pipeline(pipeline)

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
        sample = self.pipeline(self.get_record(index))
        if not isinstance(sample, DetSample):
            raise TypeError(
                f"the pipeline of {self.source} returned {type(sample).__name__}, not a DetSample: does "
                "it start with lightdet.data.LoadImage?"
            )
        return sample

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.source!r}, {len(self)} images, classes={self.class_names})"

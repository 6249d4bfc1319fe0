"""Aspect-ratio grouped batching: batches of images that are all landscape or all portrait pad less.

``GroupedBatchSampler`` subclasses torch's ``BatchSampler`` and takes the index sampler as its first
argument, named ``sampler``. Under DDP, Lightning (``use_distributed_sampler=True``, its default)
re-creates it around a ``DistributedSampler`` when the DataLoader is built inside a ``*_dataloader``
hook, as :class:`~lightdet.data.DetDataModule` does; each rank then groups its own shard.

Class-balanced oversampling is therefore not a sampler: an index sampler inside a batch sampler is
replaced by that ``DistributedSampler`` under DDP, and per-rank repetition would give ranks different
batch counts. :func:`repeat_factors` computes LVIS's factors and
:class:`~lightdet.data.ClassBalancedDataset` repeats indices in the dataset itself, which every
sampler (and the DDP split) then treats as ordinary images.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from torch.utils.data import BatchSampler, Sampler

__all__ = ["GroupedBatchSampler", "aspect_ratio_group_ids", "repeat_factors"]


def aspect_ratio_group_ids(
    aspect_ratios: Sequence[float] | np.ndarray, boundaries: Sequence[float] = (1.0,)
) -> np.ndarray:
    """``int64 [N]``: each image's group, the number of ``boundaries`` below its width / height ratio.

    The default ``(1.0,)`` gives MMDetection's two groups: 0 for portrait or square, 1 for landscape.
    """
    ratios = np.asarray(aspect_ratios, dtype=np.float64)
    return np.digitize(ratios, np.sort(np.asarray(boundaries, dtype=np.float64)), right=True).astype(np.int64)


class GroupedBatchSampler(BatchSampler):
    """Yields batches whose images share a group id, in the order the groups fill up.

    Each index of ``sampler`` is yielded exactly once per epoch: when the sampler is exhausted, the
    partial batches left in every group are concatenated (group by group) and cut into batches, so
    the number of batches is ``ceil(len(sampler) / batch_size)`` (``floor`` with ``drop_last``) and
    only those last batches may mix groups.

    Args:
        sampler: the index sampler (random, sequential or distributed).
        group_ids: ``[len(dataset)]`` group of every dataset index (:func:`aspect_ratio_group_ids`).
        batch_size: images per batch.
        drop_last: drop the final incomplete batch.
    """

    def __init__(
        self,
        sampler: Sampler[int] | Iterable[int],
        group_ids: Sequence[int] | np.ndarray,
        batch_size: int,
        drop_last: bool = False,
    ) -> None:
        super().__init__(sampler, batch_size, drop_last)
        self.group_ids = np.asarray(group_ids, dtype=np.int64)

    def __iter__(self) -> Iterator[list[int]]:
        buffers: dict[int, list[int]] = {}
        for index in self.sampler:
            buffer = buffers.setdefault(int(self.group_ids[index]), [])
            buffer.append(int(index))
            if len(buffer) == self.batch_size:
                yield buffer.copy()
                buffer.clear()
        leftovers = [i for group in sorted(buffers) for i in buffers[group]]
        for start in range(0, len(leftovers), self.batch_size):
            batch = leftovers[start : start + self.batch_size]
            if len(batch) == self.batch_size or not self.drop_last:
                yield batch

    def __len__(self) -> int:
        n = len(self.sampler)  # type: ignore[arg-type]
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)


def repeat_factors(class_sets: Sequence[np.ndarray], oversample_thr: float) -> np.ndarray:
    """LVIS-style class-balanced repeat factors (Gupta et al. 2019), one per image.

    With ``f_c`` the fraction of images that contain class ``c``, the class factor is
    ``r_c = max(1, sqrt(oversample_thr / f_c))`` and an image's factor is the largest ``r_c`` of its
    classes (1 for an image without boxes). Classes present in at least ``oversample_thr`` of the
    images are not oversampled.

    Args:
        class_sets: per image, the distinct labels of its (non-ignored) boxes, ``int [k_i]``.
        oversample_thr: the frequency threshold ``t`` in ``(0, 1]``.

    Returns:
        ``float64 [len(class_sets)]`` factors ``>= 1``.
    """
    if not 0.0 < oversample_thr <= 1.0:
        raise ValueError(f"oversample_thr must be in (0, 1], got {oversample_thr}")
    n = len(class_sets)
    if n == 0:
        return np.zeros(0, dtype=np.float64)
    flat = np.concatenate([np.unique(np.asarray(c, dtype=np.int64)) for c in class_sets])
    counts = np.bincount(flat, minlength=1).astype(np.float64)
    with np.errstate(divide="ignore"):
        class_factor = np.maximum(1.0, np.sqrt(oversample_thr / (counts / n)))
    return np.array(
        [class_factor[np.asarray(c, dtype=np.int64)].max() if len(c) else 1.0 for c in class_sets],
        dtype=np.float64,
    )

"""Aspect-ratio grouped batching: batches of images that are all landscape or all portrait pad less.

``GroupedBatchSampler`` subclasses torch's ``BatchSampler`` and takes the index sampler as its first
argument, named ``sampler``. Under DDP, Lightning (``use_distributed_sampler=True``, its default)
re-creates it around a ``DistributedSampler`` when the DataLoader is built inside a ``*_dataloader``
hook, as :class:`~lightdet.data.DetDataModule` does; each rank then groups its own shard.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from torch.utils.data import BatchSampler, Sampler

__all__ = ["GroupedBatchSampler", "aspect_ratio_group_ids"]


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

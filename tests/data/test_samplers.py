from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from lightning.fabric.utilities.data import _replace_dunder_methods
from lightning.pytorch.utilities.data import _update_dataloader
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler, RandomSampler, SequentialSampler

from lightdet.data import GroupedBatchSampler, aspect_ratio_group_ids


def test_group_ids_split_portrait_and_landscape():
    ids = aspect_ratio_group_ids([0.5, 1.0, 1.01, 2.0])
    assert ids.tolist() == [0, 0, 1, 1] and ids.dtype == np.int64
    assert aspect_ratio_group_ids([0.4, 0.9, 1.5], boundaries=[1.0, 0.5]).tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    ("n", "batch_size", "drop_last"), [(23, 4, False), (23, 4, True), (8, 3, False), (5, 8, False)]
)
def test_every_index_once_and_groups_kept(n, batch_size, drop_last):
    group_ids = torch.randint(0, 2, (n,), generator=torch.Generator().manual_seed(n)).numpy()
    sampler = GroupedBatchSampler(RandomSampler(range(n)), group_ids, batch_size, drop_last=drop_last)
    batches = list(sampler)
    assert len(batches) == len(sampler)
    seen = Counter(i for b in batches for i in b)
    assert all(c == 1 for c in seen.values())
    if not drop_last:
        assert sorted(seen) == list(range(n))
    mixed = [b for b in batches if len({int(group_ids[i]) for i in b}) > 1]
    assert len(mixed) <= 1  # only where the two groups' remainders meet
    assert all(len(b) == batch_size for b in batches[:-1])


def test_grouping_follows_the_sampler_order():
    group_ids = [0, 1, 0, 1, 0, 1]
    assert list(GroupedBatchSampler(SequentialSampler(range(6)), group_ids, 2)) == [[0, 2], [1, 3], [4, 5]]


def test_lightning_can_inject_a_distributed_sampler():
    """Under DDP, Lightning re-creates the batch sampler around a DistributedSampler."""
    dataset = list(range(10))
    group_ids = np.array([0, 1] * 5)
    with _replace_dunder_methods(BatchSampler):  # what Lightning wraps the *_dataloader hooks in
        loader = DataLoader(dataset, batch_sampler=GroupedBatchSampler(RandomSampler(dataset), group_ids, 2))
    shards = []
    for rank in range(2):
        dist = DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=0)
        new = _update_dataloader(loader, dist)
        assert isinstance(new.batch_sampler, GroupedBatchSampler)
        assert new.batch_sampler.sampler is dist and len(new.batch_sampler) == 3
        shards.append([i for b in new.batch_sampler for i in b])
    assert sorted(shards[0] + shards[1]) == dataset

import torch

from lightdet.models import RandomSampler
from lightdet.models.ops import IGNORED, NEGATIVE


def assigned(num_pos: int, num_neg: int, num_ignored: int = 5) -> torch.Tensor:
    gt_index = torch.cat([
        torch.arange(num_pos) % 3, torch.full((num_neg,), NEGATIVE), torch.full((num_ignored,), IGNORED)
    ])
    return gt_index[torch.randperm(len(gt_index), generator=torch.Generator().manual_seed(0))]


def test_counts_with_enough_of_both():
    gt_index = assigned(300, 1000)
    pos, neg = RandomSampler(256, 0.5).sample(gt_index)
    assert (len(pos), len(neg)) == (128, 128)
    assert (gt_index[pos] >= 0).all() and (gt_index[neg] == NEGATIVE).all()
    assert len(set(pos.tolist())) == 128 and len(set(neg.tolist())) == 128


def test_negatives_fill_missing_positives():
    pos, neg = RandomSampler(512, 0.25).sample(assigned(10, 1000))
    assert (len(pos), len(neg)) == (10, 502)


def test_too_few_of_both_and_none():
    pos, neg = RandomSampler(256, 0.5).sample(assigned(3, 7))
    assert (len(pos), len(neg)) == (3, 7)
    pos, neg = RandomSampler(256, 0.5).sample(torch.zeros(0, dtype=torch.int64))
    assert (len(pos), len(neg)) == (0, 0)


def test_seeded_draws_repeat():
    gt_index = assigned(300, 1000)
    torch.manual_seed(7)
    first = RandomSampler(64, 0.5).sample(gt_index)
    torch.manual_seed(7)
    second = RandomSampler(64, 0.5).sample(gt_index)
    assert all(torch.equal(a, b) for a, b in zip(first, second))

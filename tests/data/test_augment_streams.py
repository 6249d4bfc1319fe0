"""The augmentation stream: repeatable under a seed, different per DataLoader worker and per DDP rank."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch.utils.data import Dataset

from lightdet.data import DetDataModule
from lightdet.data.streams import augment_generator, seed_stream, set_stream_rank, stream_rank, uniform
from lightdet.structures import DetSample, ImageMeta


@pytest.fixture(autouse=True)
def _rank_zero_after():
    yield
    set_stream_rank(0)


def test_stream_follows_torch_seed_and_restarts_on_request():
    torch.manual_seed(11)
    a = [uniform(0, 1) for _ in range(3)]
    torch.manual_seed(12)
    b = [uniform(0, 1) for _ in range(3)]
    torch.manual_seed(11)  # another seed than the last one: the stream restarts from it
    assert [uniform(0, 1) for _ in range(3)] == a and a != b
    seed_stream(5)
    c = [uniform(0, 1) for _ in range(3)]
    seed_stream(5)
    assert [uniform(0, 1) for _ in range(3)] == c
    assert augment_generator() is augment_generator()


def test_ranks_draw_different_streams_from_the_same_seed():
    draws = {}
    for rank in (0, 1):
        set_stream_rank(rank)
        seed_stream(42)
        draws[rank] = [uniform(0, 1) for _ in range(4)]
    assert stream_rank() == 1 and draws[0] != draws[1]
    with pytest.raises(ValueError):
        set_stream_rank(-1)


class _Draws(Dataset[DetSample]):
    """Each item's pixels are the augmentation stream's next draws in whichever process loads it."""

    class_names = ["a"]

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> DetSample:
        pixels = torch.randint(0, 256, (3, 2, 2), dtype=torch.uint8, generator=augment_generator())
        meta = ImageMeta(image_id=index, file_name="", ori_size=(2, 2), img_size=(2, 2))
        return DetSample(image=pixels, boxes=torch.zeros((0, 4)), labels=torch.zeros(0, dtype=torch.int64), meta=meta)


def _first_epoch(rank: int, num_workers: int) -> list[torch.Tensor]:
    """The four images of one epoch of a train loader built for ``rank`` (items in order, batch 1)."""
    torch.manual_seed(7)
    dm = DetDataModule(
        train=_Draws(), batch_size=1, num_workers=num_workers, shuffle=False, group_by_aspect_ratio=False,
        persistent_workers=False, pin_memory=False,
    )  # fmt: skip
    dm.trainer = SimpleNamespace(global_rank=rank, distributed_sampler_kwargs=None)
    return [batch.images[0] for batch in dm.train_dataloader()]


@pytest.mark.parametrize("lightning_worker_seeding", ["0", "1"])
def test_workers_and_ranks_get_different_streams(monkeypatch, lightning_worker_seeding: str):
    monkeypatch.setenv("PL_SEED_WORKERS", lightning_worker_seeding)
    rank0, again, rank1 = _first_epoch(0, 2), _first_epoch(0, 2), _first_epoch(1, 2)
    assert all(torch.equal(a, b) for a, b in zip(rank0, again))  # repeatable under the seed
    assert not torch.equal(rank0[0], rank0[1])  # items 0 and 1 are the first draws of workers 0 and 1
    assert not any(torch.equal(a, b) for a, b in zip(rank0, rank1))


def test_main_process_loading_repeats_and_differs_per_rank():
    rank0, again, rank1 = _first_epoch(0, 0), _first_epoch(0, 0), _first_epoch(1, 0)
    assert all(torch.equal(a, b) for a, b in zip(rank0, again))
    assert not any(torch.equal(a, b) for a, b in zip(rank0, rank1))

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from lightdet.data import DetDataModule, GroupedBatchSampler, LoadImage, RandomFlip, shapes_dataset
from lightdet.structures import DetBatch


@pytest.fixture
def datasets(tiny_shapes):
    kwargs = {"num_train": 12, "num_val": 6, "seed": 3}
    pipeline = [LoadImage(), RandomFlip()]
    train = shapes_dataset(tiny_shapes, "train", pipeline=pipeline, with_mask=True, **kwargs)
    val = shapes_dataset(tiny_shapes, "val", **kwargs)
    return train, val


def check_batch(batch: DetBatch, size: int) -> None:
    assert isinstance(batch, DetBatch) and len(batch) == size
    assert batch.images.dtype == torch.uint8 and batch.images.shape[:2] == (size, 3)
    for i, meta in enumerate(batch.metas):
        h, w = meta.img_size
        assert h <= batch.images.shape[2] and w <= batch.images.shape[3]
        assert not batch.images[i, :, h:, :].any() and not batch.images[i, :, :, w:].any()  # zero padding
        boxes = batch.boxes[i]
        assert len(boxes) == len(batch.labels[i]) == len(batch.ignore[i]) > 0
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= torch.tensor([w, h])).all()
        assert (boxes[:, 2:] > boxes[:, :2]).all()
        assert batch.labels[i].dtype == torch.int64 and int(batch.labels[i].max()) < 5


def test_train_val_test_loaders(datasets):
    train, val = datasets
    dm = DetDataModule(train=train, val=val, batch_size=4, val_batch_size=3, num_workers=0)
    loader = dm.train_dataloader()
    assert isinstance(loader.batch_sampler, GroupedBatchSampler) and not loader.persistent_workers
    batches = list(loader)
    assert len(batches) == 3
    for b in batches:
        check_batch(b, 4)
        assert all(m is not None and m.shape[0] == len(bx) for m, bx in zip(b.masks, b.boxes))
    assert sorted(m.image_id for b in batches for m in b.metas) == list(range(1, 13))
    val_batches = list(dm.val_dataloader())
    assert [len(b) for b in val_batches] == [3, 3] and val_batches[0].masks == [None] * 3
    check_batch(val_batches[0], 3)
    assert dm.test is val and len(dm.test_dataloader()) == 2
    assert dm.class_names == ["circle", "square", "triangle", "star", "hexagon"]


def test_ungrouped_and_workers(datasets):
    train, val = datasets
    dm = DetDataModule(
        train=train, val=val, batch_size=5, num_workers=2, group_by_aspect_ratio=False, shuffle=False
    )
    loader = dm.train_dataloader()
    assert loader.persistent_workers and loader.num_workers == 2
    assert not loader.pin_memory  # no CUDA here: nothing to pin for
    batches = list(loader)
    assert [len(b) for b in batches] == [5, 5, 2]
    assert [m.image_id for m in batches[0].metas] == [1, 2, 3, 4, 5]
    check_batch(batches[0], 5)


class _Plain(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int):
        raise IndexError(i)


def test_errors():
    with pytest.raises(ValueError, match="no train dataset"):
        DetDataModule(num_workers=0).train_dataloader()
    with pytest.raises(ValueError, match="no test dataset was given and no val dataset"):
        DetDataModule(num_workers=0).test_dataloader()
    with pytest.raises(TypeError, match="aspect_ratios.*group_by_aspect_ratio=false"):
        DetDataModule(train=_Plain(), num_workers=0).train_dataloader()
    with pytest.raises(AttributeError, match="class_names"):
        _ = DetDataModule(train=_Plain()).class_names
    with pytest.raises(ValueError, match="batch_size >= 1"):
        DetDataModule(batch_size=0)


def test_package_exports_resolve_lazily():
    import lightdet.data as data

    assert sorted(data.__all__) == sorted(data._MODULE_OF)
    for name in data.__all__:
        assert getattr(data, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = data.Nope

"""Data contracts: construction checks, collate/padding, device moves, box helpers."""

from __future__ import annotations

import pytest
import torch

from lightdet.structures import (
    CroppedMasks,
    DetBatch,
    Detections,
    DetSample,
    ImageMeta,
    box_area,
    clip_boxes,
    xywh_to_xyxy,
    xyxy_to_xywh,
)


def _sample(h: int = 20, w: int = 30, n: int = 2, image_id: int = 1) -> DetSample:
    return DetSample(
        image=torch.full((3, h, w), 7, dtype=torch.uint8),
        boxes=torch.tensor([[1.0, 2.0, 10.0, 12.0]] * n).reshape(-1, 4),
        labels=torch.zeros(n, dtype=torch.int64),
        meta=ImageMeta(image_id=image_id, file_name=f"{image_id}.jpg", ori_size=(h, w), img_size=(h, w)),
    )


def test_sample_defaults_ignore_to_false() -> None:
    s = _sample(n=3)
    assert s.ignore is not None and s.ignore.dtype == torch.bool and not s.ignore.any()
    assert len(s) == 3


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("image", torch.zeros((3, 20, 30)), "uint8"),
        ("boxes", torch.zeros((2, 4), dtype=torch.float64), "float32"),
        ("boxes", torch.zeros((2, 5)), r"\[N, 4\]"),
        ("labels", torch.zeros(2, dtype=torch.int32), "int64"),
        ("labels", torch.zeros(3, dtype=torch.int64), r"\[2\]"),
        ("ignore", torch.zeros(2, dtype=torch.uint8), "bool"),
        ("masks", torch.zeros((2, 5, 5), dtype=torch.uint8), "spatial size"),
        ("masks", torch.zeros((1, 20, 30), dtype=torch.uint8), "N=2"),
    ],
)
def test_sample_rejects_bad_fields(field: str, value: torch.Tensor, message: str) -> None:
    s = _sample()
    kwargs = {k: getattr(s, k) for k in ("image", "boxes", "labels", "meta", "ignore", "masks")}
    kwargs[field] = value
    with pytest.raises(ValueError, match=message):
        DetSample(**kwargs)


def test_sample_crops_bitmap_masks_and_checks_cropped_ones() -> None:
    bitmaps = torch.zeros((2, 20, 30), dtype=torch.bool)
    bitmaps[0, 3:7, 4:9] = True
    bitmaps[1, 19, 29] = True
    s = _sample()
    with_masks = DetSample(image=s.image, boxes=s.boxes, labels=s.labels, meta=s.meta, masks=bitmaps)
    assert isinstance(with_masks.masks, CroppedMasks) and with_masks.masks.shape == (2, 20, 30)
    assert with_masks.masks.regions.tolist() == [[4, 3, 9, 7], [29, 19, 30, 20]]
    assert torch.equal(with_masks.masks.to_bitmaps(), bitmaps.to(torch.uint8))
    for wrong in (CroppedMasks.from_bitmaps(bitmaps[:1]), CroppedMasks.from_bitmaps(bitmaps[:, :, :29])):
        with pytest.raises(ValueError, match="N=2 masks"):
            DetSample(image=s.image, boxes=s.boxes, labels=s.labels, meta=s.meta, masks=wrong)


def test_batch_keeps_cropped_masks_crops_bitmaps_and_moves_them() -> None:
    a, b = _sample(20, 30, n=1), _sample(25, 10, n=0, image_id=2)
    a.masks = torch.ones((1, 20, 30), dtype=torch.uint8)  # set after construction: cropped by the batch
    b.masks = CroppedMasks.empty((25, 10))
    batch = DetBatch.collate([a, b])
    assert [type(m) for m in batch.masks] == [CroppedMasks, CroppedMasks]
    assert batch.masks[0].regions.tolist() == [[0, 0, 30, 20]] and batch.masks[1].shape == (0, 25, 10)
    moved = batch.to("meta")
    assert all(m.pixels.device.type == "meta" and m.regions.device.type == "meta" for m in moved.masks)
    a.masks = torch.ones((1, 20, 31), dtype=torch.uint8)
    with pytest.raises(ValueError, match="image 1"):
        DetBatch.collate([a])


def test_sample_rejects_meta_size_mismatch() -> None:
    s = _sample()
    bad = ImageMeta(image_id=5, file_name="x", ori_size=(20, 30), img_size=(21, 30))
    with pytest.raises(ValueError, match="image_id=5"):
        DetSample(image=s.image, boxes=s.boxes, labels=s.labels, meta=bad)


def test_collate_pads_top_left_with_zeros() -> None:
    batch = DetBatch.collate([_sample(20, 30, n=1), _sample(25, 10, n=0, image_id=2)])
    assert batch.images.shape == (2, 3, 25, 30) and batch.images.dtype == torch.uint8
    assert (batch.images[0, :, :20, :30] == 7).all() and (batch.images[0, :, 20:, :] == 0).all()
    assert (batch.images[1, :, :, 10:] == 0).all() and (batch.images[1, :, :25, :10] == 7).all()
    assert [len(b) for b in batch.boxes] == [1, 0]
    assert batch.masks == [None, None] and len(batch) == 2


def test_collate_rejects_empty_list() -> None:
    with pytest.raises(ValueError, match="at least one"):
        DetBatch.collate([])


def test_batch_to_keeps_metas_and_moves_tensors() -> None:
    batch = DetBatch.collate([_sample()]).to("meta")
    assert batch.images.device.type == "meta" and batch.boxes[0].device.type == "meta"
    assert batch.metas[0].image_id == 1


def test_detections_checks_and_indexing() -> None:
    d = Detections(
        boxes=torch.tensor([[0.0, 0, 1, 1], [1, 1, 3, 3]]),
        scores=torch.tensor([0.9, 0.2]),
        labels=torch.tensor([1, 0]),
    )
    kept = d[d.scores > 0.5]
    assert len(kept) == 1 and kept.labels.tolist() == [1]
    assert len(Detections.empty()) == 0
    with pytest.raises(ValueError, match="scores"):
        Detections(boxes=d.boxes, scores=torch.tensor([1, 2]), labels=d.labels)


def test_box_conversions_round_trip_and_area() -> None:
    xywh = torch.tensor([[10.0, 20.0, 5.0, 8.0], [0.0, 0.0, 0.0, 3.0]])
    xyxy = xywh_to_xyxy(xywh)
    assert xyxy.tolist() == [[10.0, 20.0, 15.0, 28.0], [0.0, 0.0, 0.0, 3.0]]
    assert torch.equal(xyxy_to_xywh(xyxy), xywh)
    assert box_area(xyxy).tolist() == [40.0, 0.0]


def test_clip_boxes_to_height_width() -> None:
    clipped = clip_boxes(torch.tensor([[-5.0, -1.0, 50.0, 12.0]]), (10, 40))
    assert clipped.tolist() == [[0.0, 0.0, 40.0, 10.0]]

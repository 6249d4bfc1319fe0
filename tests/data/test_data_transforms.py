from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from augment_helpers import blob_sample
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torchvision.transforms.v2 import InterpolationMode

from lightdet.data import Albu, Compose, LoadImage, RandomFlip, Resize, read_image, rescale_size
from lightdet.data.records import ImageRecord
from lightdet.data.transforms import hflip_sample, resize_sample
from lightdet.structures import CroppedMasks, DetSample, ImageMeta


def make_sample(h: int = 30, w: int = 40, boxes: list[list[int]] | None = None, seed: int = 0) -> DetSample:
    """A random image with integer boxes whose masks fill them exactly."""
    boxes = [[2, 3, 12, 11], [20, 5, 35, 25]] if boxes is None else boxes
    gen = torch.Generator().manual_seed(seed)
    masks = torch.zeros((len(boxes), h, w), dtype=torch.uint8)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        masks[i, y1:y2, x1:x2] = 1
    return DetSample(
        image=torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=gen),
        boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        labels=torch.arange(len(boxes), dtype=torch.int64),
        ignore=torch.arange(len(boxes)) % 2 == 1,
        masks=masks,
        meta=ImageMeta(image_id=1, file_name="x.jpg", ori_size=(h, w), img_size=(h, w)),
    )


def mask_boxes(masks: torch.Tensor) -> list[list[int] | None]:
    """xyxy box of each mask's nonzero pixels (pixel i spans [i, i + 1)); None for empty masks."""
    out: list[list[int] | None] = []
    for m in masks:
        ys, xs = torch.nonzero(m, as_tuple=True)
        box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1] if len(xs) else None
        out.append(box)
    return out


@pytest.mark.parametrize(
    ("hw", "scale", "keep_ratio", "expected"),
    [
        ((480, 640), (1333, 800), True, (800, 1067)),
        ((3000, 1000), (1333, 800), True, (1333, 444)),  # long side limits: 1333 / 3000
        ((800, 1333), (800, 1333), True, (800, 1333)),  # scale order does not matter
        ((100, 100), (1333, 800), True, (800, 800)),  # upscaling
        ((480, 640), (1333, 800), False, (800, 1333)),  # exact (width, height)
    ],
)
def test_rescale_size_mmdet_semantics(hw, scale, keep_ratio, expected):
    assert rescale_size(hw, scale, keep_ratio) == expected


def test_resize_updates_boxes_masks_and_meta():
    out = Resize((80, 60))(make_sample(30, 40))
    assert out.image.shape == (3, 60, 80) and out.masks.shape == (2, 60, 80)
    torch.testing.assert_close(out.boxes, torch.tensor([[4.0, 6, 24, 22], [40, 10, 70, 50]]))
    assert out.meta.img_size == (60, 80) and out.meta.ori_size == (30, 40)
    assert out.meta.scale_factor == (2.0, 2.0)
    assert mask_boxes(out.masks) == [[4, 6, 24, 22], [40, 10, 70, 50]]
    again = Resize((40, 30))(out)
    assert again.meta.scale_factor == (1.0, 1.0) and again.meta.img_size == (30, 40)


def test_resize_without_masks_and_without_boxes():
    sample = make_sample(30, 40, boxes=[])
    out = Resize((80, 60))(DetSample(sample.image, sample.boxes, sample.labels, sample.meta))
    assert out.masks is None and out.boxes.shape == (0, 4)
    assert Resize((80, 60))(sample).masks.shape == (0, 60, 80)


def test_multiscale_range_and_choice():
    torch.manual_seed(0)
    ranged = Resize([[1333, 640], [1333, 800]], multiscale_mode="range")
    sizes = {rescale_size((480, 640), ranged.sample_scale()) for _ in range(200)}
    shorts = {min(s) for s in sizes}
    assert min(shorts) >= 640 and max(shorts) <= 800 and len(shorts) > 50
    chosen = Resize([[1333, 640], [1333, 800]], multiscale_mode="choice")
    assert {chosen.sample_scale() for _ in range(50)} == {(1333, 640), (1333, 800)}
    with pytest.raises(ValueError, match="takes two scales"):
        Resize([[1, 2], [3, 4], [5, 6]])
    with pytest.raises(ValueError, match="two positive numbers"):
        Resize([1333])


def test_flip():
    sample = make_sample(30, 40)
    out = RandomFlip(prob=1.0)(sample)
    torch.testing.assert_close(out.boxes, torch.tensor([[28.0, 3, 38, 11], [5, 5, 20, 25]]))
    assert out.meta.flip and torch.equal(out.image, sample.image.flip(-1))
    assert mask_boxes(out.masks) == out.boxes.int().tolist()
    back = hflip_sample(out)
    assert not back.meta.flip and torch.equal(back.boxes, sample.boxes)
    assert back.masks.equal(sample.masks)
    assert RandomFlip(prob=0.0)(sample) is sample


def test_albu_by_name_photometric_keeps_geometry():
    sample = make_sample()
    out = Albu([{"type": "RandomBrightnessContrast", "p": 1.0, "brightness_limit": [0.3, 0.4]}])(sample)
    assert not torch.equal(out.image, sample.image)
    assert torch.equal(out.boxes, sample.boxes) and out.masks.equal(sample.masks)
    assert torch.equal(out.labels, sample.labels) and torch.equal(out.ignore, sample.ignore)


def test_albu_crop_drops_boxes_with_their_labels_and_masks():
    sample = make_sample(30, 40, boxes=[[2, 3, 12, 11], [20, 5, 35, 25], [30, 20, 40, 30]])
    out = Albu([{"type": "Crop", "x_min": 15, "y_min": 0, "x_max": 40, "y_max": 30}])(sample)
    assert out.image.shape == (3, 30, 25) and out.meta.img_size == (30, 25)
    torch.testing.assert_close(out.boxes, torch.tensor([[5.0, 5, 20, 25], [15, 20, 25, 30]]))
    assert out.labels.tolist() == [1, 2] and out.ignore.tolist() == [True, False]
    assert mask_boxes(out.masks) == out.boxes.int().tolist()


@pytest.mark.parametrize("size", [(60, 80), (17, 23), (45, 31), (30, 40)])
def test_resize_and_flip_move_masks_as_they_move_the_full_bitmaps(size):
    sample = blob_sample(30, 40, [[0, 0, 40, 30], [5, 3, 19, 29], [30, 20, 40, 30], [39, 0, 40, 1]], seed=1)
    full = sample.masks.to_bitmaps()
    resized = resize_sample(sample, size)
    expected = TF.resize(full, list(size), interpolation=InterpolationMode.NEAREST_EXACT)
    assert torch.equal(resized.masks.to_bitmaps(), expected)
    assert torch.equal(hflip_sample(resized).masks.to_bitmaps(), expected.flip(-1))


def test_albu_moves_masks_as_albumentations_moves_the_full_bitmaps():
    sample = blob_sample(30, 40, [[2, 3, 12, 11], [20, 5, 35, 25], [30, 20, 40, 30]], seed=2)
    full = sample.masks.to_bitmaps()
    out = Albu([{"type": "Crop", "x_min": 15, "y_min": 2, "x_max": 40, "y_max": 27},
                {"type": "HorizontalFlip", "p": 1.0}])(sample)  # fmt: skip
    assert out.labels.tolist() == [1, 2]
    assert torch.equal(out.masks.to_bitmaps(), full[1:, 2:27, 15:40].flip(-1))


def test_albu_pixel_value_steps_never_paint_full_masks(monkeypatch):
    sample = blob_sample(30, 40, [[2, 3, 12, 11], [20, 5, 35, 25]], seed=3)

    def refuse(self):
        raise AssertionError("full bitmaps made for pixel-value transforms")

    monkeypatch.setattr(CroppedMasks, "to_bitmaps", refuse)
    out = Albu([{"type": "OneOf", "transforms": [{"type": "RandomBrightnessContrast", "p": 1.0},
                                                 {"type": "ToGray", "p": 1.0}]}], min_area=90)(sample)  # fmt: skip
    assert out.labels.tolist() == [1]  # the 80 px box is below min_area: its mask goes with it
    assert out.masks.equal(sample.masks[1:])


def test_albu_errors_and_nested_compositions():
    with pytest.raises(ValueError, match=r"no transform 'HorizontalFlop'; did you mean \['HorizontalFlip'"):
        Albu([{"type": "HorizontalFlop"}])
    with pytest.raises(ValueError, match="needs a `type`"):
        Albu([{"p": 0.5}])
    nested = Albu([{"type": "OneOf", "p": 1.0, "transforms": [{"type": "HorizontalFlip", "p": 1.0}]}])
    out = nested(make_sample())
    torch.testing.assert_close(out.boxes, torch.tensor([[28.0, 3, 38, 11], [5, 5, 20, 25]]))


def test_albu_reseeds_from_torch_so_workers_differ():
    albu = Albu([{"type": "RandomBrightnessContrast", "p": 1.0}])
    sample = make_sample()
    torch.manual_seed(1)
    a = albu(sample).image
    torch.manual_seed(2)
    b = albu(sample).image
    torch.manual_seed(1)
    c = albu(sample).image
    assert not torch.equal(a, b) and torch.equal(a, c)


def test_read_image_formats(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 255, (7, 9, 3), dtype=np.uint8)
    for name in ("a.png", "a.bmp"):
        Image.fromarray(pixels).save(tmp_path / name)
        assert torch.equal(read_image(tmp_path / name), torch.from_numpy(pixels).permute(2, 0, 1))
    Image.fromarray(pixels[..., 0]).save(tmp_path / "gray.png")
    assert read_image(tmp_path / "gray.png").shape == (3, 7, 9)


def test_load_image_and_compose(tmp_path):
    Image.fromarray(np.zeros((6, 8, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    record = ImageRecord(
        image_id=3, file_path=str(tmp_path / "x.png"), width=8, height=6,
        boxes=np.array([[1, 1, 4, 4]], dtype=np.float32), labels=np.array([2]), ignore=np.array([False]),
        segmentations=[[[1, 1, 4, 1, 4, 4, 1, 4]]],
    )
    out = Compose([LoadImage(), Resize((16, 12))])(record)
    assert out.meta.ori_size == (6, 8) and out.meta.img_size == (12, 16) and out.masks.shape == (1, 12, 16)
    assert out.labels.tolist() == [2] and out.labels.dtype == torch.int64
    with pytest.raises(TypeError, match="not callable"):
        Compose([{"_target_": "lightdet.data.Resize"}])


@st.composite
def samples(draw: st.DrawFn) -> DetSample:
    h, w = draw(st.integers(16, 48)), draw(st.integers(16, 48))
    boxes = []
    for _ in range(draw(st.integers(0, 4))):
        x1, y1 = draw(st.integers(0, w - 1)), draw(st.integers(0, h - 1))
        boxes.append([x1, y1, draw(st.integers(x1 + 1, w)), draw(st.integers(y1 + 1, h))])
    return make_sample(h, w, boxes, seed=draw(st.integers(0, 100)))


@settings(max_examples=40, deadline=None)
@given(
    sample=samples(),
    scale=st.tuples(st.integers(8, 96), st.integers(8, 96)),
    keep_ratio=st.booleans(),
    crop=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_transforms_keep_boxes_masks_and_meta_consistent(sample, scale, keep_ratio, crop, seed):
    torch.manual_seed(seed)
    steps = [Albu([{"type": "RandomCrop", "height": 14, "width": 12, "p": 1.0}])] if crop else []
    steps += [Resize(scale, keep_ratio=keep_ratio), RandomFlip(0.5)]
    out = Compose(steps)(sample)
    h, w = out.meta.img_size
    assert out.image.shape == (3, h, w) and out.masks.shape == (len(out), h, w)
    assert len(out.labels) == len(out.ignore) == len(out)
    b = out.boxes
    assert ((b[:, 0] >= 0) & (b[:, 1] >= 0) & (b[:, 2] <= w) & (b[:, 3] <= h)).all()
    assert ((b[:, 2] >= b[:, 0]) & (b[:, 3] >= b[:, 1])).all()
    for box, mbox in zip(b.tolist(), mask_boxes(out.masks)):
        if mbox is not None:
            assert mbox[0] >= box[0] - 1 and mbox[1] >= box[1] - 1, (box, mbox)
            assert mbox[2] <= box[2] + 1 and mbox[3] <= box[3] + 1, (box, mbox)
    if not crop:
        sx, sy = out.meta.scale_factor
        assert abs(sample.meta.img_size[1] * sx - w) < 1e-6 and abs(sample.meta.img_size[0] * sy - h) < 1e-6
        assert len(out) == len(sample) and torch.equal(out.labels, sample.labels)


def test_albu_rejects_a_non_rgb_result():
    with pytest.raises(ValueError, match=r"must return a uint8 \[H, W, 3\] image, not \(30, 40\)"):
        Albu([{"type": "ToGray", "num_output_channels": 1, "p": 1.0}])(make_sample())

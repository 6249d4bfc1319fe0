"""Geometric augmentation steps: boxes, labels, ignore flags and masks after each, worked out by hand."""

from __future__ import annotations

import pytest
import torch
from augment_helpers import blob_sample, box_sample, by_label, mask_box, nearest_warp, on_canvas, same_sample
from torchvision.ops import box_iou

from lightdet.data import (
    Pad,
    RandomAffine,
    RandomCrop,
    RandomIoUCrop,
    RandomResize,
    RandomZoomOut,
    SanitizeBoundingBoxes,
)
from lightdet.data.affine import affine_matrix, affine_sample
from lightdet.data.augment import crop_sample, iou_crop
from lightdet.data.sample_ops import place
from lightdet.data.streams import seed_stream

BOXES = [[2, 3, 12, 11], [20, 5, 35, 25]]


def _masks_match_boxes(sample) -> bool:
    return [mask_box(m) for m in sample.masks] == sample.boxes.int().tolist()


def test_random_resize_scales_by_the_drawn_ratio():
    sample = box_sample(30, 40, BOXES, ignore=[False, True])
    # ratio 0.5 of (160, 120) is (80, 60): a 40x30 image fits it at factor 2
    out = RandomResize((160, 120), ratio_range=(0.5, 0.5))(sample)
    assert out.meta.img_size == (60, 80) and out.meta.scale_factor == (2.0, 2.0)
    torch.testing.assert_close(out.boxes, torch.tensor([[4.0, 6, 24, 22], [40, 10, 70, 50]]))
    assert out.ignore.tolist() == [False, True] and _masks_match_boxes(out)


def test_random_resize_draws_within_its_range():
    sample = box_sample(30, 40, BOXES)
    seed_stream(0)
    sizes = {RandomResize((40, 30), ratio_range=(1.0, 2.0))(sample).meta.img_size for _ in range(20)}
    assert len(sizes) > 5 and all(30 <= h <= 60 and 40 <= w <= 80 for h, w in sizes)


def test_crop_cuts_boxes_and_drops_the_small_ones():
    sample = box_sample(30, 40, BOXES, labels=[3, 4], ignore=[True, False])
    out = crop_sample(sample, (10, 5, 30, 25))
    # [2,3,12,11] -> [-8,-2,2,6] -> [0,0,2,6]; [20,5,35,25] -> [10,0,25,20] -> [10,0,20,20]
    torch.testing.assert_close(out.boxes, torch.tensor([[0.0, 0, 2, 6], [10, 0, 20, 20]]))
    assert out.labels.tolist() == [3, 4] and out.ignore.tolist() == [True, False]
    assert out.meta.img_size == (20, 20) and _masks_match_boxes(out)
    assert torch.equal(out.image, sample.image[:, 5:25, 10:30])
    small = crop_sample(sample, (10, 5, 30, 25), min_size=3)
    assert small.boxes.tolist() == [[10.0, 0, 20, 20]] and small.labels.tolist() == [4]
    assert small.ignore.tolist() == [False] and small.masks.shape == (1, 20, 20)


def test_crop_recomputes_boxes_from_masks():
    sample = box_sample(30, 40, [[2, 3, 12, 11]])
    sample.boxes[0] = torch.tensor([0.0, 0, 14, 13])  # an annotated box looser than its mask
    out = crop_sample(sample, (0, 0, 40, 30), recompute_boxes=True)
    assert out.boxes.tolist() == [[2.0, 3, 12, 11]]


def test_random_crop_keeps_small_images_whole_and_prefers_windows_with_boxes():
    sample = box_sample(30, 40, BOXES)
    assert RandomCrop((50, 50))(sample).meta.img_size == (30, 40)
    corner = box_sample(40, 40, [[0, 0, 20, 20]])
    seed_stream(1)
    kept_strict = sum(len(RandomCrop((10, 10))(corner)) for _ in range(50))
    seed_stream(1)
    kept_any = sum(len(RandomCrop((10, 10), allow_empty=True)(corner)) for _ in range(50))
    # a window keeps the box ~42% of the time; ten tries almost always find one
    assert kept_strict >= 45 and kept_any <= 35


def test_pad_extends_bottom_right_with_the_fill():
    sample = box_sample(30, 40, BOXES, value=7)
    out = Pad((50, 35), fill=114)(sample)
    assert out.meta.img_size == (35, 50) and torch.equal(out.boxes, sample.boxes)
    assert (out.image[:, :30, :40] == 7).all() and (out.image[:, 30:] == 114).all()
    assert (out.image[:, :, 40:] == 114).all() and _masks_match_boxes(out)
    assert Pad((20, 20))(sample) is sample


def test_zoom_out_shifts_everything_by_one_offset():
    sample = box_sample(30, 40, BOXES, value=9)
    seed_stream(3)
    out = RandomZoomOut(fill=0, side_range=(2.0, 2.0), prob=1.0)(sample)
    assert out.meta.img_size == (60, 80)
    shift = out.boxes - sample.boxes
    dx, dy = int(shift[0, 0]), int(shift[0, 1])
    assert torch.equal(shift, torch.tensor([[dx, dy, dx, dy]] * 2, dtype=torch.float32))
    assert 0 <= dx <= 40 and 0 <= dy <= 30
    assert (out.image[:, dy : dy + 30, dx : dx + 40] == 9).all() and int(out.image.sum()) == 9 * 3 * 30 * 40
    assert _masks_match_boxes(out)
    assert RandomZoomOut(prob=0.0)(sample) is sample


def test_iou_crop_drops_boxes_whose_centre_leaves_the_window():
    sample = box_sample(30, 40, BOXES, labels=[1, 2], ignore=[False, True])
    # centre of [2,3,12,11] is x=7, outside x in (10, 30): dropped though it overlaps the window
    out = iou_crop(sample, (10, 0, 30, 20))
    assert out.boxes.tolist() == [[10.0, 5, 20, 20]] and out.labels.tolist() == [2]
    assert out.ignore.tolist() == [True] and out.meta.img_size == (20, 20) and _masks_match_boxes(out)


def test_random_iou_crop_windows_meet_the_constraints():
    sample = box_sample(60, 80, [[10, 10, 30, 30], [40, 20, 70, 50]])
    step = RandomIoUCrop(sampler_options=[0.5], prob=1.0)
    seed_stream(4)
    for _ in range(10):
        x1, y1, x2, y2 = step.find_window(sample)
        w, h = x2 - x1, y2 - y1
        assert 0.3 * 80 - 1 <= w <= 80 and 0.3 * 60 - 1 <= h <= 60 and 0.5 <= w / h <= 2.0
        window = torch.tensor([[x1, y1, x2, y2]], dtype=torch.float32)
        assert float(box_iou(sample.boxes, window).max()) >= 0.5
    assert RandomIoUCrop(sampler_options=[1.0], prob=1.0)(sample) is sample
    assert RandomIoUCrop(prob=1.0)(box_sample(20, 20)).meta.img_size == (20, 20)


def test_sanitize_drops_thin_and_tiny_boxes_with_their_fields():
    sample = box_sample(20, 20, [[0, 0, 1, 10], [0, 0, 10, 10], [5, 5, 6, 6]], labels=[4, 5, 6])
    sample.boxes[0, 2] = 0.5  # 0.5 px wide
    out = SanitizeBoundingBoxes(min_size=1, min_area=2)(sample)
    assert out.boxes.tolist() == [[0.0, 0, 10, 10]] and out.labels.tolist() == [5]
    assert out.masks.shape == (1, 20, 20) and mask_box(out.masks[0]) == [0, 0, 10, 10]


def test_affine_translation_moves_pixels_boxes_and_masks():
    sample = box_sample(20, 30, [[2, 2, 10, 10], [25, 2, 29, 10]], labels=[1, 2])
    shift = torch.tensor([[1.0, 0, 5], [0, 1, 3], [0, 0, 1]], dtype=torch.float64).numpy()
    out = affine_sample(sample, shift, (20, 30), fill=114)
    # the second box moves to x = 30..34, off the image: dropped with its label and mask
    assert out.boxes.tolist() == [[7.0, 5, 15, 13]] and out.labels.tolist() == [1]
    assert mask_box(out.masks[0]) == [7, 5, 15, 13]
    assert torch.equal(out.image[:, 3:, 5:], sample.image[:, :17, :25])
    assert (out.image[:, :3] == 114).all() and (out.image[:, :, :5] == 114).all()


def test_affine_rotation_about_the_centre():
    sample = box_sample(20, 20, [[2, 4, 6, 10]])
    matrix = affine_matrix((20, 20), (20, 20), angle=90, scale=1.0, shear=(0, 0), centre=(0.5, 0.5))
    out = affine_sample(sample, matrix, (20, 20))
    # (x, y) -> (y, 20 - x): x in [2, 6], y in [4, 10] -> x in [4, 10], y in [14, 18]
    assert out.boxes.tolist() == [[4.0, 14, 10, 18]] and mask_box(out.masks[0]) == [4, 14, 10, 18]


BLOBS = [[0, 0, 10, 30], [5, 3, 19, 29], [30, 20, 40, 30], [12, 8, 33, 22]]


@pytest.mark.parametrize(
    ("step", "window"),
    [
        (lambda s: crop_sample(s, (5, 3, 32, 25)), (5, 3, 32, 25)),
        (lambda s: crop_sample(s, (8, 0, 40, 30), min_size=6), (8, 0, 40, 30)),
        (lambda s: iou_crop(s, (0, 10, 25, 30)), (0, 10, 25, 30)),
        (Pad((50, 45)), (0, 0, 50, 45)),
        (lambda s: place(s, (-6, -4, 50, 40)), (-6, -4, 50, 40)),
    ],
    ids=["crop", "crop_min_size", "iou_crop", "pad", "zoom_out"],
)
def test_crops_and_pads_move_masks_as_they_move_the_full_bitmaps(step, window):
    sample = blob_sample(30, 40, BLOBS, seed=4)
    out = step(sample)
    moved = on_canvas(sample.masks.to_bitmaps(), window)
    assert len(out) > 0 and torch.equal(out.masks.to_bitmaps(), by_label(out, dict(enumerate(moved))))


@pytest.mark.parametrize(
    ("angle", "scale", "shear", "out_size"),
    [(0.0, 1.0, (0.0, 0.0), (30, 40)), (23.0, 1.3, (2.0, -1.0), (36, 44)), (-40.0, 0.7, (0.0, 3.0), (20, 30))],
)
def test_affine_moves_masks_as_it_moves_the_full_bitmaps(angle, scale, shear, out_size):
    sample = blob_sample(30, 40, BLOBS, seed=5)
    matrix = affine_matrix((30, 40), out_size, angle=angle, scale=scale, shear=shear, centre=(0.45, 0.55))
    out = affine_sample(sample, matrix, out_size)
    warped = nearest_warp(sample.masks.to_bitmaps(), matrix, out_size)
    assert len(out) > 0 and torch.equal(out.masks.to_bitmaps(), by_label(out, dict(enumerate(warped))))


def test_random_affine_border_sets_the_output_size():
    sample = box_sample(40, 60, [[5, 5, 50, 35]])
    seed_stream(5)
    out = RandomAffine(border=(-15, -10), max_rotate_degree=0, max_shear_degree=0)(sample)
    assert out.meta.img_size == (20, 30) and out.masks.shape[1:] == (20, 30)
    assert (out.boxes[:, 2:] <= torch.tensor([30.0, 20.0])).all()


@pytest.mark.parametrize(
    "step",
    [
        RandomResize((80, 60), ratio_range=(0.5, 1.5)),
        RandomCrop((20, 20)),
        RandomZoomOut(prob=0.7),
        RandomIoUCrop(prob=0.9),
        RandomAffine(),
    ],
    ids=lambda s: type(s).__name__,
)
def test_steps_repeat_under_a_seed_and_vary_without(step):
    sample = box_sample(30, 40, BOXES)

    def run(seed: int) -> list:
        seed_stream(seed)
        return [step(sample) for _ in range(6)]

    first, again, other = run(0), run(0), run(1)
    assert all(same_sample(a, b) for a, b in zip(first, again))
    assert not all(same_sample(a, b) for a, b in zip(first, other))
    if isinstance(step, (RandomCrop, RandomZoomOut, RandomIoUCrop)):  # integer moves: masks fill the boxes
        assert all(_masks_match_boxes(s) for s in first)

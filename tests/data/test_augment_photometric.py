"""Photometric steps: YOLOX's HSV jitter and the SSD / RT-DETR photometric distortion."""

from __future__ import annotations

import torch
import torchvision.transforms.v2.functional as TF
from augment_helpers import box_sample, same_sample

from lightdet.data import RandomHSV, RandomPhotometricDistort
from lightdet.data.photometric import hsv_shift, photometric_distort
from lightdet.data.streams import seed_stream


def _colour(r: int, g: int, b: int) -> torch.Tensor:
    return torch.tensor([r, g, b], dtype=torch.uint8).view(3, 1, 1).expand(3, 4, 5).contiguous()


def test_hsv_shift_in_opencv_units():
    red = _colour(255, 0, 0)  # H 0, S 255, V 255
    assert torch.equal(hsv_shift(red, (60, 0, 0)), _colour(0, 255, 0))  # hue 60 of 180: green
    assert torch.equal(hsv_shift(red, (120, 0, 0)), _colour(0, 0, 255))
    assert torch.equal(hsv_shift(red, (0, 0, -55)), _colour(200, 0, 0))
    assert torch.equal(hsv_shift(red, (0, -255, 0)), _colour(255, 255, 255))  # saturation clamps at 0
    assert torch.equal(hsv_shift(red, (0, 0, 100)), red)  # value clamps at 255
    assert hsv_shift(red, (0, 0, 0)) is red


def test_random_hsv_gains_are_whole_and_bounded_and_boxes_untouched():
    step = RandomHSV(hue_delta=5, saturation_delta=30, value_delta=30)
    seed_stream(0)
    gains = [step.draw_gains() for _ in range(200)]
    assert all(abs(h) < 5 and abs(s) < 30 and abs(v) < 30 for h, s, v in gains)
    assert {h == 0 for h, _, _ in gains} == {True, False}  # each is switched off half of the time
    sample = box_sample(8, 10, [[1, 1, 5, 5]])
    out = step(sample)
    assert torch.equal(out.boxes, sample.boxes) and out.masks.equal(sample.masks)


def test_photometric_distort_applies_factors_in_torchvision_order():
    image = _colour(100, 50, 20)
    assert torch.equal(photometric_distort(image, brightness=0.5), _colour(50, 25, 10))
    assert torch.equal(photometric_distort(image, permutation=[2, 0, 1]), _colour(20, 100, 50))
    expected = TF.adjust_contrast(TF.adjust_hue(TF.adjust_saturation(image, 1.3), 0.02), 0.7)
    got = photometric_distort(image, contrast=0.7, contrast_first=False, saturation=1.3, hue=0.02)
    assert torch.equal(got, expected)
    assert torch.equal(photometric_distort(image), image)


def test_random_photometric_distort_draws_each_change_with_p():
    step = RandomPhotometricDistort(p=0.5)
    seed_stream(1)
    draws = [step.draw_params() for _ in range(200)]
    for key in ("brightness", "contrast", "saturation", "hue", "permutation"):
        applied = sum(d[key] is not None for d in draws)
        assert 60 < applied < 140, (key, applied)
    assert all(0.875 <= d["brightness"] <= 1.125 for d in draws if d["brightness"] is not None)
    assert all(sorted(d["permutation"]) == [0, 1, 2] for d in draws if d["permutation"] is not None)
    sample = box_sample(8, 10, [[1, 1, 5, 5]])
    assert same_sample(RandomPhotometricDistort(p=0.0)(sample), sample)


def test_photometric_steps_repeat_under_a_seed():
    sample = box_sample(8, 10, [[1, 1, 5, 5]])
    for step in (RandomHSV(), RandomPhotometricDistort(p=0.5)):
        seed_stream(2)
        first = [step(sample).image for _ in range(5)]
        seed_stream(2)
        again = [step(sample).image for _ in range(5)]
        assert all(torch.equal(a, b) for a, b in zip(first, again))
        assert not all(torch.equal(a, sample.image) for a in first)

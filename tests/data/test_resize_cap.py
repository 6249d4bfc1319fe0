"""A test pipeline's size cap: Resize(downscale_only=True) shrinks large images and leaves small ones."""

import torch

from lightdet.data import Resize
from lightdet.structures import DetSample, ImageMeta


def _sample(h: int, w: int) -> DetSample:
    meta = ImageMeta(image_id=1, file_name="big.jpg", ori_size=(h, w), img_size=(h, w))
    return DetSample(
        image=torch.zeros((3, h, w), dtype=torch.uint8), boxes=torch.tensor([[0.0, 0.0, w / 2, h / 2]]),
        labels=torch.tensor([0]), meta=meta,
    )  # fmt: skip


def test_a_huge_photo_is_shrunk_to_the_cap_with_its_boxes():
    out = Resize(scale=[144, 144], downscale_only=True)(_sample(4000, 6000))
    assert out.meta.img_size == (96, 144)
    assert out.boxes.tolist() == [[0.0, 0.0, 72.0, 48.0]]


def test_an_image_within_the_cap_is_left_as_it_is():
    sample = _sample(120, 140)
    assert Resize(scale=[144, 144], downscale_only=True)(sample) is sample
    assert Resize(scale=[144, 144])(sample).meta.img_size == (123, 144)  # a target size enlarges it

"""CroppedMasks: every operation equals the same operation on the full bitmaps (then cropped), on random
blob masks that touch the image's borders, empty instances and images without instances included."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from torchvision.transforms.v2 import InterpolationMode

from lightdet.cropped_masks import CroppedMasks


def blob_bitmaps(n: int, h: int, w: int, seed: int) -> torch.Tensor:
    """``uint8 [n, h, w]``: each instance random pixels (60 % set) in a random rectangle; every third empty."""
    g = torch.Generator().manual_seed(seed)
    out = torch.zeros((n, h, w), dtype=torch.uint8)
    for i in range(n):
        if i % 3 == 2:
            continue
        x0, y0 = int(torch.randint(0, w, (), generator=g)), int(torch.randint(0, h, (), generator=g))
        x1, y1 = (
            int(torch.randint(x0 + 1, w + 1, (), generator=g)),
            int(torch.randint(y0 + 1, h + 1, (), generator=g)),
        )
        out[i, y0:y1, x0:x1] = (torch.rand(y1 - y0, x1 - x0, generator=g) < 0.6).to(torch.uint8)
    return out


CASES = [(0, 7, 9), (1, 1, 1), (4, 30, 40), (5, 23, 17), (6, 50, 61)]


@pytest.fixture(params=range(len(CASES)), ids=lambda i: "n{}_{}x{}".format(*CASES[i]))
def full(request) -> torch.Tensor:
    n, h, w = CASES[request.param]
    return blob_bitmaps(n, h, w, seed=request.param)


def nearest_rule(full: torch.Tensor, matrix: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """The affine rule on whole images: output pixel (x, y) takes input pixel floor(M^-1 (x + .5, y + .5))."""
    inv = torch.linalg.inv(torch.as_tensor(matrix, dtype=torch.float64))
    cx = torch.arange(size[1], dtype=torch.float64)[None, :] + 0.5
    cy = torch.arange(size[0], dtype=torch.float64)[:, None] + 0.5
    sx = (inv[0, 0] * cx + (inv[0, 1] * cy + inv[0, 2])).floor().long()
    sy = (inv[1, 0] * cx + (inv[1, 1] * cy + inv[1, 2])).floor().long()
    h, w = full.shape[1:]
    valid = (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)
    return full[:, sy.clamp(0, h - 1), sx.clamp(0, w - 1)] * valid


def affine(angle: float, scale: float, shift: tuple[float, float], shear: float = 0.0) -> np.ndarray:
    a = math.radians(angle)
    c, s, t = math.cos(a) * scale, math.sin(a) * scale, math.tan(math.radians(shear))
    return np.array([[c, s + t, shift[0]], [-s, c, shift[1]], [0, 0, 1]], dtype=np.float64)


def test_bitmaps_round_trip_through_tight_regions(full):
    masks = CroppedMasks.from_bitmaps(full)
    assert masks.shape == full.shape and masks.dtype == torch.uint8 and len(masks) == len(full)
    assert torch.equal(masks.to_bitmaps(), full)
    assert [torch.equal(a, b) for a, b in zip(masks, full)] == [True] * len(full)
    assert masks.pixels.numel() == int(masks.areas().sum()) <= full.numel()
    for i, m in enumerate(full):  # each region is the tight box of its pixels
        ys, xs = torch.nonzero(m, as_tuple=True)
        expected = (
            [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1] if len(xs) else [0] * 4
        )
        assert masks.regions[i].tolist() == expected
    assert masks.tight_boxes().tolist() == masks.regions.float().tolist()


def test_indexing_reads_bitmaps_and_selects_instances():
    full = blob_bitmaps(5, 20, 30, seed=1)
    masks = CroppedMasks.from_bitmaps(full)
    assert torch.equal(masks[3], full[3]) and torch.equal(masks[-1], full[-1])
    assert torch.equal(masks[1, 2:9, 4:], full[1, 2:9, 4:])
    keep = torch.tensor([True, False, True, True, False])
    for key, rows in [
        (keep, [0, 2, 3]),
        (torch.tensor([4, 0, 0]), [4, 0, 0]),
        (slice(1, 3), [1, 2]),
        ([3], [3]),
    ]:
        assert torch.equal(masks[key].to_bitmaps(), full[rows])
    assert masks[torch.zeros(5, dtype=torch.bool)].shape == (0, 20, 30)
    with pytest.raises(TypeError, match="to_bitmaps"):
        masks[:, 3]
    with pytest.raises(IndexError):
        masks[5]


def test_equal_compares_masks_not_regions():
    full = blob_bitmaps(3, 12, 14, seed=2)
    tight = CroppedMasks.from_bitmaps(full)
    whole = CroppedMasks.from_crops(list(full), torch.tensor([[0, 0, 14, 12]] * 3), (12, 14))  # loose regions
    assert (
        whole.equal(tight)
        and tight.equal(full)
        and whole.tighten().regions.tolist() == tight.regions.tolist()
    )
    other = full.clone()
    other[0, 0, 0] ^= 1
    assert not tight.equal(other) and not tight.equal(full[:2]) and not tight.equal(full[:, :11])


def test_construction_checks():
    with pytest.raises(ValueError, match="uint8"):
        CroppedMasks(torch.zeros(4), torch.zeros((1, 4), dtype=torch.int64), (5, 5))
    with pytest.raises(ValueError, match="within"):
        CroppedMasks(torch.zeros(4, dtype=torch.uint8), torch.tensor([[3, 3, 5, 6]]), (5, 5))
    with pytest.raises(ValueError, match="pixels for regions"):
        CroppedMasks(torch.zeros(3, dtype=torch.uint8), torch.tensor([[0, 0, 2, 2]]), (5, 5))
    with pytest.raises(ValueError, match="a crop of"):
        CroppedMasks.from_crops([torch.ones(2, 3)], torch.tensor([[0, 0, 2, 3]]), (5, 5))
    with pytest.raises(ValueError, match="1 crops for 2 regions"):
        CroppedMasks.from_crops([torch.ones(3, 2)], torch.tensor([[0, 0, 2, 3], [0, 0, 1, 1]]), (5, 5))
    assert CroppedMasks.empty((4, 6)).shape == (0, 4, 6)


@pytest.mark.parametrize("size", [(60, 80), (10, 13), (1, 1), (101, 7), (23, 17)])
def test_resize_equals_nearest_exact_resize_of_the_bitmaps(full, size):
    ref = TF.resize(full, list(size), interpolation=InterpolationMode.NEAREST_EXACT) if len(full) else None
    out = CroppedMasks.from_bitmaps(full).resize(size)
    assert out.shape == (len(full), *size)
    assert ref is None or torch.equal(out.to_bitmaps(), ref)


def test_hflip_equals_mirrored_bitmaps(full):
    flipped = CroppedMasks.from_bitmaps(full).hflip()
    assert torch.equal(flipped.to_bitmaps(), full.flip(-1))
    assert torch.equal(flipped.hflip().to_bitmaps(), full)


@pytest.mark.parametrize("offset", [(0, 0), (5, -3), (-12, 4), (-100, 0), (3, 60)])
@pytest.mark.parametrize("size", [(30, 40), (12, 50), (70, 9)])
def test_translate_equals_pasting_the_bitmaps_on_a_canvas(full, offset, size):
    n, h, w = full.shape
    dx, dy = offset
    ref = torch.zeros((n, *size), dtype=torch.uint8)
    x1, y1, x2, y2 = max(dx, 0), max(dy, 0), min(dx + w, size[1]), min(dy + h, size[0])
    if x2 > x1 and y2 > y1:
        ref[:, y1:y2, x1:x2] = full[:, y1 - dy : y2 - dy, x1 - dx : x2 - dx]
    assert torch.equal(CroppedMasks.from_bitmaps(full).translate(offset, size).to_bitmaps(), ref)


@pytest.mark.parametrize(
    ("matrix", "size"),
    [
        (affine(0, 1.0, (5, -3)), (40, 50)),
        (affine(90, 1.0, (30, 0)), (45, 45)),
        (affine(17, 1.3, (-4, 6), shear=3), (50, 70)),
        (affine(-33, 0.6, (10, 12)), (25, 30)),
        (affine(180, 2.0, (90, 100)), (64, 64)),
    ],
)
def test_warp_affine_equals_the_rule_on_whole_images(full, matrix, size):
    out = CroppedMasks.from_bitmaps(full).warp_affine(matrix, size)
    assert torch.equal(out.to_bitmaps(), nearest_rule(full, matrix, size))


def test_warp_affine_follows_opencv_nearest_up_to_its_fixed_point():
    """OpenCV samples with 1/1024-pixel coordinates: it may pick the neighbour of a pixel centre that lies
    within that of a pixel edge, so a few mask pixels out of thousands can differ; integer moves agree."""
    cv2 = pytest.importorskip("cv2")
    full = blob_bitmaps(6, 50, 61, seed=6)
    half = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])

    def opencv(matrix, size):
        m = np.linalg.inv(half) @ matrix @ half
        out = cv2.warpAffine(np.ascontiguousarray(full.permute(1, 2, 0).numpy()), m[:2], (size[1], size[0]),
                             flags=cv2.INTER_NEAREST, borderValue=0)  # fmt: skip
        return torch.from_numpy(out.reshape(*size, -1)).permute(2, 0, 1)

    masks = CroppedMasks.from_bitmaps(full)
    for matrix in (affine(0, 1.0, (7, -2)), affine(90, 1.0, (50, 0))):
        assert torch.equal(masks.warp_affine(matrix, (55, 66)).to_bitmaps(), opencv(matrix, (55, 66)))
    matrix = affine(13, 1.37, (-3, 5), shear=2)
    differ = (masks.warp_affine(matrix, (70, 90)).to_bitmaps() != opencv(matrix, (70, 90))).sum()
    assert int(differ) <= 0.005 * int(full.sum())


def test_select_cat_union_erase_and_counts_follow_the_bitmaps(full):
    masks = CroppedMasks.from_bitmaps(full)
    assert masks.pixel_counts().tolist() == full.flatten(1).sum(1).tolist()
    assert torch.equal(masks.union(), full.bool().any(0))
    where = blob_bitmaps(1, *full.shape[1:], seed=9)[0].bool()
    erased = masks.erase(where)
    assert torch.equal(erased.to_bitmaps(), full * ~where)
    both = CroppedMasks.cat([masks, erased, masks[:1]])
    assert torch.equal(both.to_bitmaps(), torch.cat([full, full * ~where, full[:1]]))
    with pytest.raises(ValueError, match="one image size"):
        CroppedMasks.cat([masks, CroppedMasks.empty((3, 3))])


def test_tight_boxes_of_erased_masks():
    full = torch.zeros((2, 10, 12), dtype=torch.uint8)
    full[0, 2:6, 3:9] = 1
    full[1, 7, 11] = 1
    where = torch.zeros((10, 12), dtype=torch.bool)
    where[:, 6:] = True
    out = CroppedMasks.from_bitmaps(full).erase(where)
    assert out.regions.tolist() == [[3, 2, 9, 6], [11, 7, 12, 8]]  # regions stay; boxes shrink
    assert out.tight_boxes().tolist() == [[3.0, 2, 6, 6], [0, 0, 0, 0]]


def test_windows_read_the_bitmaps_inside_the_image(full):
    masks = CroppedMasks.from_bitmaps(full)
    n, h, w = full.shape
    index = torch.arange(n).flip(0)
    windows, origin = masks.windows(index)
    assert windows.shape[0] == origin.shape[0] == n
    wh, ww = windows.shape[1:]
    for k, i in enumerate(index.tolist()):
        x, y = origin[k].tolist()
        assert 0 <= x <= w - ww and 0 <= y <= h - wh
        assert torch.equal(windows[k], full[i, y : y + wh, x : x + ww])
        x0, y0, x1, y1 = masks.regions[i].tolist()
        if x1 > x0:  # the region and a pixel around it, where the image has one
            assert x <= max(x0 - 1, 0) and x + ww >= min(x1 + 1, w)
            assert y <= max(y0 - 1, 0) and y + wh >= min(y1 + 1, h)


def test_device_moves_keep_the_masks():
    masks = CroppedMasks.from_bitmaps(blob_bitmaps(3, 9, 11, seed=4))
    moved = masks.to("meta")
    assert moved.pixels.device.type == "meta" and moved.regions.device.type == "meta"
    assert moved.image_size == (9, 11) and len(moved) == 3
    assert masks.to("cpu").equal(masks)
    assert masks.nbytes == masks.pixels.numel() + 3 * 4 * 8

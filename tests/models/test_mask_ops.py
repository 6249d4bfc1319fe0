"""Mask targets from ground-truth masks and pasting RoI masks into images, on shapes with known answers."""

import pytest
import torch
from torchvision.ops import roi_align

from lightdet.models.ops.masks import boxes_to_original, mask_targets, paste_in_original, paste_masks
from lightdet.structures import CroppedMasks, ImageMeta


def rect_masks(h: int, w: int, rects: list[tuple[int, int, int, int]]) -> torch.Tensor:
    out = torch.zeros((len(rects), h, w), dtype=torch.uint8)
    for i, (x1, y1, x2, y2) in enumerate(rects):
        out[i, y1:y2, x1:x2] = 1
    return out


def test_target_of_the_instance_box_is_all_ones_and_halves_split():
    masks = rect_masks(40, 50, [(10, 8, 30, 24), (0, 0, 50, 40)])
    rois = torch.tensor([[10.0, 8, 30, 24], [20, 8, 40, 24], [10, 16, 30, 32]])
    targets = mask_targets(CroppedMasks.from_bitmaps(masks), torch.tensor([0, 0, 0]), rois, 8)
    assert targets.shape == (3, 8, 8)
    assert (targets[0] == 1).all()
    # shifted right by half the box: left half inside the instance, right half outside
    assert (targets[1][:, :4] == 1).all() and (targets[1][:, 4:] == 0).all()
    assert (targets[2][:4] == 1).all() and (targets[2][4:] == 0).all()


def assert_targets_match_full_roi_align(masks: torch.Tensor, gt_index: torch.Tensor, rois: torch.Tensor, atol: float):
    """Soft targets equal RoIAlign of the full bitmaps; hard ones its threshold wherever that is clear."""
    indexed = torch.cat([gt_index[:, None].float(), rois], 1)
    cropped = CroppedMasks.from_bitmaps(masks)
    for aligned in (True, False):
        full = roi_align(masks[:, None].float(), indexed, 28, 1.0, 0, aligned)[:, 0]
        soft = mask_targets(cropped, gt_index, rois, 28, aligned=aligned, binarize=False)
        torch.testing.assert_close(soft, full, atol=atol, rtol=0)
        hard = mask_targets(cropped, gt_index, rois, 28, aligned=aligned)
        clear = (full - 0.5).abs() > atol  # values at 0.5 may round either way
        assert torch.equal(hard[clear], (full[clear] >= 0.5).float())


def test_targets_equal_full_image_roi_align_away_from_the_border():
    g = torch.Generator().manual_seed(0)
    masks = (torch.rand(3, 60, 70, generator=g) > 0.6).to(torch.uint8)
    masks[:, :3], masks[:, -3:], masks[:, :, :3], masks[:, :, -3:] = 0, 0, 0, 0
    masks[1] = 0  # an empty instance
    gt_index = torch.tensor([2, 0, 1, 2, 0])
    rois = torch.tensor(
        [[5.0, 5, 30, 40], [0, 0, 70, 60], [10, 10, 20, 20], [-5.5, 20, 40.2, 70], [33, 3, 66, 21]]
    )
    assert_targets_match_full_roi_align(masks, gt_index, rois, atol=1e-5)


def test_targets_equal_full_image_roi_align_at_the_border():
    """Instances touching every side of the image: RoIAlign clamps at the image's edge on both sides."""
    g = torch.Generator().manual_seed(1)
    masks = (torch.rand(4, 50, 64, generator=g) > 0.5).to(torch.uint8)
    masks[0, :, :40] = 0  # right part only
    masks[1, :30] = 0  # bottom part only
    masks[2, 10:, 10:] = 0  # top-left corner only
    rois = torch.tensor([[40.0, 0, 64, 50], [30, 40, 70.5, 52], [-3, -3, 12, 12], [0, 0, 64, 50],
                         [50.2, 30.7, 63.9, 49.6], [20, 35, 64, 50]])  # fmt: skip
    assert_targets_match_full_roi_align(masks, torch.tensor([0, 1, 2, 3, 0, 1]), rois, atol=1e-5)


def test_targets_of_a_large_image_match_within_coordinate_rounding():
    """At 800 x 1333 px the RoIs' float32 coordinates, moved into the windows, round by up to ~1e-4 px."""
    g = torch.Generator().manual_seed(2)
    masks = torch.zeros((5, 800, 1333), dtype=torch.uint8)
    for i, (x0, y0, x1, y1) in enumerate([(0, 0, 300, 200), (1000, 600, 1333, 800), (500, 100, 900, 700),
                                          (1200, 0, 1333, 90), (10, 700, 80, 800)]):  # fmt: skip
        masks[i, y0:y1, x0:x1] = (torch.rand(y1 - y0, x1 - x0, generator=g) > 0.3).to(torch.uint8)
    boxes = CroppedMasks.from_bitmaps(masks).regions.float()
    gt_index = torch.arange(5).repeat(4)
    jitter = (torch.rand(20, 4, generator=g) - 0.5) * 0.2 * (boxes[gt_index, 2:] - boxes[gt_index, :2]).repeat(1, 2)
    assert_targets_match_full_roi_align(masks, gt_index, boxes[gt_index] + jitter, atol=5e-4)


def test_no_positive_gives_no_target():
    masks = CroppedMasks.from_bitmaps(rect_masks(10, 10, [(1, 1, 5, 5)]))
    assert mask_targets(masks, torch.zeros(0, dtype=torch.int64), torch.zeros(0, 4), 28).shape == (0, 28, 28)


def test_full_mask_pastes_exactly_its_integer_box():
    probs = torch.ones(2, 28, 28)
    boxes = torch.tensor([[10.0, 5, 30, 25], [-10, -10, 8, 12]])  # the second leaves the image
    out = paste_masks(probs, boxes, (40, 50))
    assert out.shape == (2, 40, 50) and out.dtype == torch.bool
    assert torch.equal(out[0], rect_masks(40, 50, [(10, 5, 30, 25)])[0].bool())
    assert torch.equal(out[1], rect_masks(40, 50, [(0, 0, 8, 12)])[0].bool())


def test_half_mask_pastes_the_left_half_and_chunks_agree():
    probs = torch.zeros(3, 28, 28)
    probs[:, :, :14] = 1
    boxes = torch.tensor([[0.0, 0, 20, 10], [4, 4, 44, 24], [30, 0, 50, 40]])
    out = paste_masks(probs, boxes, (40, 50))
    expected = rect_masks(40, 50, [(0, 0, 10, 10), (4, 4, 24, 24), (30, 0, 40, 40)]).bool()
    assert torch.equal(out, expected)
    assert torch.equal(paste_masks(probs, boxes, (40, 50), max_elements=1), out)  # one box per chunk


@pytest.mark.parametrize("mode", ["mmdet", "torchvision"])
def test_chunks_of_mixed_sizes_paste_each_mask_at_its_own_box(mode):
    """Chunks are formed by window area (not input order): every mask must still land in its own row."""
    g = torch.Generator().manual_seed(1)
    xy = torch.rand(12, 2, generator=g) * torch.tensor([60.0, 40.0])
    wh = torch.rand(12, 2, generator=g) * torch.tensor([40.0, 30.0]) + 0.5
    boxes = torch.cat([xy - 5, xy + wh], 1)
    boxes[3] = torch.tensor([7.0, 7, 7, 7])  # empty window
    probs = torch.rand(12, 28, 28, generator=g)
    alone = torch.stack([paste_masks(probs[i : i + 1], boxes[i : i + 1], (48, 64), mode=mode)[0] for i in range(12)])
    assert torch.equal(paste_masks(probs, boxes, (48, 64), mode=mode), alone)
    assert torch.equal(paste_masks(probs, boxes, (48, 64), mode=mode, max_elements=600), alone)
    assert alone.flatten(1).any(1).sum() >= 10


@pytest.mark.parametrize("mode", ["mmdet", "torchvision"])
def test_paste_of_no_detection_and_of_a_degenerate_box(mode):
    assert paste_masks(torch.zeros(0, 28, 28), torch.zeros(0, 4), (7, 9), mode=mode).shape == (0, 7, 9)
    out = paste_masks(torch.ones(1, 28, 28), torch.tensor([[3.0, 3, 3, 3]]), (7, 9), mode=mode)
    assert out.shape == (1, 7, 9) and out.sum() <= 1


def test_torchvision_mode_matches_torchvision_paste():
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    g = torch.Generator().manual_seed(0)
    probs = torch.rand(6, 28, 28, generator=g)
    boxes = torch.tensor([[3.2, 4.7, 40.1, 33.3], [0, 0, 64, 48], [20.5, 10, 22.5, 30], [50, 30, 70, 60],
                          [-4, -3, 10, 9], [10, 10, 60, 47.9]])
    ours = paste_masks(probs, boxes, (48, 64), mode="torchvision")
    ref = paste_masks_in_image(probs[:, None], boxes, (48, 64))[:, 0] >= 0.5
    mismatch = (ours != ref).flatten(1).sum(1)
    assert (mismatch <= 2).all(), mismatch  # bilinear sampling vs interpolate: float rounding at 0.5


def test_paste_in_original_undoes_scale_and_flip():
    probs = torch.zeros(1, 28, 28)
    probs[:, :, :14] = 1  # the box's left half
    meta = ImageMeta(1, "a.jpg", ori_size=(20, 30), img_size=(40, 60), scale_factor=(2.0, 2.0), flip=True)
    boxes = torch.tensor([[0.0, 0, 40, 20]])  # flipped input: in the original, x 10..30, y 0..10
    torch.testing.assert_close(boxes_to_original(boxes, meta), torch.tensor([[10.0, 0, 30, 10]]))
    out = paste_in_original(probs, boxes, meta)
    # the left half in the flipped input is the right half in the original
    assert torch.equal(out[0], rect_masks(20, 30, [(20, 0, 30, 10)])[0].bool())

"""Instance-mask operators: RoI mask targets from ground-truth masks, and pasting RoI masks into images.

Both work on the region that matters rather than on whole images:

* :func:`mask_targets` reads each used ground-truth instance from its region
  (:meth:`lightdet.structures.CroppedMasks.windows`), so the float copy RoIAlign samples is bounded by the
  largest instance, not by ``G x H x W`` of the image (torchvision converts every ground-truth mask of the
  image; MMDetection one full-image mask per positive RoI), and the targets are those of the full bitmaps.
* :func:`paste_masks` samples each ``M x M`` probability map only over its box's pixels and writes the
  thresholded result into a ``bool`` image mask, never allocating a full-image float mask per detection.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import roi_align

from lightdet.structures import CroppedMasks, ImageMeta

__all__ = [
    "PASTE_MODES",
    "boxes_to_original",
    "mask_targets",
    "paste_in_original",
    "paste_masks",
    "paste_regions",
]

PASTE_MODES = ("mmdet", "torchvision")


def mask_targets(
    gt_masks: CroppedMasks,
    gt_index: Tensor,
    rois: Tensor,
    size: int,
    *,
    aligned: bool = True,
    sampling_ratio: int = 0,
    binarize: bool = True,
) -> Tensor:
    """RoIAlign of each RoI's matched ground-truth mask: the mask head's per-RoI targets.

    Args:
        gt_masks: one image's instance masks (on the RoIs' device).
        gt_index: ``int64 [P]`` matched instance of each RoI (into ``gt_masks``).
        rois: ``[P, 4]`` xyxy RoIs in the masks' pixels.
        size: output side ``M`` (28 for Mask R-CNN).
        aligned, sampling_ratio: RoIAlign settings (MMDetection: True, 0; torchvision: False, 0).
        binarize: threshold the averaged values at 0.5 (MMDetection) instead of keeping soft targets
            (torchvision).

    Returns:
        ``float [P, M, M]``: RoIAlign of the full bitmaps, up to float rounding of the RoIs moved into each
        instance's window (about ``1e-4`` at 1000 px).
    """
    if gt_index.numel() == 0:
        return rois.new_zeros((0, size, size))
    used, inverse = torch.unique(gt_index, return_inverse=True)
    windows, origin = gt_masks.windows(used)  # uint8 [U, h, w], int64 [U, 2]
    shifted = rois.float() - origin[inverse].repeat(1, 2).float()
    boxes = torch.cat([inverse[:, None].float(), shifted], 1)
    out = roi_align(windows[:, None].float(), boxes, size, 1.0, sampling_ratio=sampling_ratio, aligned=aligned)[:, 0]
    return (out >= 0.5).float() if binarize else out


def paste_regions(boxes: Tensor, mask_size: int, mode: str) -> tuple[Tensor, int]:
    """The image region each ``M x M`` mask spans and the zero padding to give the mask first.

    ``"mmdet"``: the box itself. ``"torchvision"``: the box grown by one mask pixel per side (the mask is
    padded with one zero pixel), corners truncated to integers and one pixel added to the width and height, as
    torchvision's ``paste_masks_in_image``.
    """
    if mode == "mmdet":
        return boxes, 0
    if mode != "torchvision":
        raise ValueError(f"paste mode must be one of {PASTE_MODES}, got {mode!r}")
    scale = (mask_size + 2) / mask_size
    centre, half = (boxes[:, :2] + boxes[:, 2:]) / 2, (boxes[:, 2:] - boxes[:, :2]) / 2 * scale
    corners = torch.cat([centre - half, centre + half], 1).trunc()
    size = (corners[:, 2:] - corners[:, :2] + 1).clamp(min=1).trunc()
    return torch.cat([corners[:, :2], corners[:, :2] + size], 1), 1


def _sample_chunk(
    probs: Tensor, regions: Tensor, lo: Tensor, extent: tuple[int, int]
) -> Tensor:
    """Bilinear samples of ``probs [n, m, m]`` at the pixel centres of an ``extent = (h, w)`` window
    starting at ``lo [n, 2]`` (x, y), ``regions [n, 4]`` being where each mask lies -> ``[n, h, w]``."""
    n = probs.shape[0]
    h, w = extent
    px = lo[:, 0:1] + torch.arange(w, device=probs.device) + 0.5  # [n, w]
    py = lo[:, 1:2] + torch.arange(h, device=probs.device) + 0.5  # [n, h]
    gx = (px - regions[:, 0:1]) / (regions[:, 2:3] - regions[:, 0:1]).clamp(min=1e-6) * 2 - 1
    gy = (py - regions[:, 1:2]) / (regions[:, 3:4] - regions[:, 1:2]).clamp(min=1e-6) * 2 - 1
    grid = torch.stack([gx[:, None, :].expand(n, h, w), gy[:, :, None].expand(n, h, w)], -1)
    return F.grid_sample(probs[:, None].float(), grid, align_corners=False)[:, 0]


def _chunks_by_size(span: Tensor, max_elements: int) -> list[tuple[Tensor, tuple[int, int]]]:
    """Windows ``span [N, 2]`` (w, h) in chunks sampled on one ``(h, w)`` grid each: sorted by area, so that
    a chunk's grid (its largest height and width) wastes little on its smaller windows, and at most
    ``max_elements`` grid cells per chunk (a single larger window is a chunk of its own). Empty windows are
    skipped. Returns ``(indices, (h, w))`` per chunk."""
    order = torch.argsort(span[:, 0] * span[:, 1])
    order = order[(span[order] > 0).all(1)]
    chunks, start = [], 0
    while start < len(order):
        rest = span[order[start:]]
        h, w = rest[:, 1].cummax(0).values, rest[:, 0].cummax(0).values
        cost = torch.arange(1, len(rest) + 1, device=span.device) * h * w  # non-decreasing
        count = max(int((cost <= max_elements).sum()), 1)
        chunks.append((order[start : start + count], (int(h[count - 1]), int(w[count - 1]))))
        start += count
    return chunks


def paste_masks(
    probs: Tensor,
    boxes: Tensor,
    image_size: tuple[int, int],
    *,
    threshold: float = 0.5,
    mode: str = "mmdet",
    max_elements: int = 1 << 22,
) -> Tensor:
    """Pastes per-box ``M x M`` mask probabilities into an image and thresholds them.

    Each mask is sampled bilinearly at the pixel centres inside its box only (MMDetection's ``_do_paste_mask``
    geometry, or torchvision's with ``mode="torchvision"``, see :func:`paste_regions`). Boxes are processed in
    chunks of similar size and at most ``max_elements`` sampled pixels, so the float work space is bounded and
    little of it is spent outside the boxes.

    Args:
        probs: ``[N, M, M]`` probabilities in ``[0, 1]``.
        boxes: ``[N, 4]`` xyxy in the target image's pixels (not clipped: the mask is relative to the box).
        image_size: ``(H, W)`` of the target image.
        threshold: pixels with probability ``>= threshold`` are set.

    Returns:
        ``bool [N, H, W]``.
    """
    height, width = image_size
    out = torch.zeros((probs.shape[0], height, width), dtype=torch.bool, device=probs.device)
    if probs.shape[0] == 0:
        return out
    regions, pad = paste_regions(boxes.float(), probs.shape[-1], mode)
    if pad:
        probs = F.pad(probs, (pad,) * 4)
    limit = regions.new_tensor([width, height, width, height])
    lo = regions[:, :2].floor().clamp(min=0).minimum(limit[:2])
    hi = regions[:, 2:].ceil().clamp(min=0).minimum(limit[:2]).maximum(lo)
    span = (hi - lo).long()  # [N, 2] (w, h) of each window
    for idx, (h, w) in _chunks_by_size(span, max_elements):
        sampled = _sample_chunk(probs[idx], regions[idx], lo[idx], (h, w)) >= threshold
        window = (torch.arange(h, device=out.device) < span[idx, 1:2])[:, :, None] & (
            torch.arange(w, device=out.device) < span[idx, 0:1]
        )[:, None, :]
        n, y, x = torch.nonzero(sampled & window, as_tuple=True)
        out[idx[n], lo[idx[n], 1].long() + y, lo[idx[n], 0].long() + x] = True
    return out


def boxes_to_original(boxes: Tensor, meta: ImageMeta) -> Tensor:
    """``[N, 4]`` boxes in the model input (``meta.img_size``) -> the original image's pixels, not clipped.

    Undoes a horizontal flip, then divides by ``meta.scale_factor`` per axis.
    """
    if meta.flip:
        w = meta.img_size[1]
        boxes = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], dim=1)
    sx, sy = meta.scale_factor
    return boxes / boxes.new_tensor([sx, sy, sx, sy])


def paste_in_original(
    probs: Tensor, boxes: Tensor, meta: ImageMeta, *, threshold: float = 0.5, mode: str = "mmdet"
) -> Tensor:
    """Masks of boxes in model-input pixels, pasted into the **original** image: ``bool [N, *meta.ori_size]``.

    ``probs [N, M, M]`` are mirrored when the input was flipped, so that they stay aligned with their boxes.
    """
    if meta.flip:
        probs = probs.flip(-1)
    return paste_masks(
        probs, boxes_to_original(boxes, meta), tuple(meta.ori_size), threshold=threshold, mode=mode
    )

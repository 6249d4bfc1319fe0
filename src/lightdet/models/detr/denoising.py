"""Contrastive denoising (CDN) queries of DN-/DINO-DETR as RT-DETR uses them in training.

Each group holds every ground-truth box twice: a positive copy (noise inside half the box size, it must
reconstruct the box) and a negative copy (noise between one and two half-sizes, it must predict
"no object"); some labels are flipped to random classes. Groups cannot see each other, and the matching
queries cannot see any denoising query.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lightdet.models.detr.box_ops import cxcywh_to_xyxy, inverse_sigmoid, xyxy_to_cxcywh


@dataclass
class DenoisingQueries:
    """The denoising part of the decoder input.

    Attributes:
        labels: ``int64 [B, D]`` noised class ids (``num_classes`` pads images with fewer boxes), to embed.
        boxes_unact: ``[B, D]`` x 4 noised boxes, inverse-sigmoid of normalised cxcywh.
        attn_mask: ``bool [D + Q, D + Q]``, True where a query may **not** attend (``nn.MultiheadAttention``).
        num_groups: denoising groups; ``D = 2 * num_groups * max_gt``.
        positive_idx: per image, the query indices (in ``0..D-1``) of its positive copies, group-major:
            ground truth ``j`` of group ``g`` is ``positive_idx[i][g * n_i + j]``.
    """

    labels: Tensor
    boxes_unact: Tensor
    attn_mask: Tensor
    num_groups: int
    positive_idx: list[Tensor]

    @property
    def num_queries(self) -> int:
        """``D``, the number of denoising queries."""
        return int(self.labels.shape[1])


def denoising_attention_mask(num_dn: int, num_queries: int, group_size: int, device: torch.device) -> Tensor:
    """``bool [D + Q, D + Q]``: matching queries do not see denoising ones; groups do not see each other."""
    size = num_dn + num_queries
    group = torch.arange(size, device=device) // group_size
    is_dn = torch.arange(size, device=device) < num_dn
    other_group = group[:, None] != group[None, :]
    return is_dn[None, :] & (other_group | ~is_dn[:, None])


def contrastive_denoising(
    labels: Sequence[Tensor],
    boxes: Sequence[Tensor],
    *,
    num_classes: int,
    num_queries: int,
    num_denoising: int = 100,
    label_noise_ratio: float = 0.5,
    box_noise_scale: float = 1.0,
) -> DenoisingQueries | None:
    """Builds the noised queries of a batch (torch's global RNG, drawn in ``transformers``' order).

    Args:
        labels: per image ``int64 [n_i]`` in ``0..num_classes-1``.
        boxes: per image ``[n_i, 4]`` normalised cxcywh.
        num_classes: K; label K is the padding class.
        num_queries: the matching queries that follow the denoising ones.
        num_denoising: the budget; groups = ``max(1, num_denoising // max_i n_i)``.
        label_noise_ratio: a label is replaced by a random class with probability ``ratio / 2``.
        box_noise_scale: corner noise in units of half the box size.

    Returns:
        None when ``num_denoising <= 0`` or no image has a box.
    """
    counts = [len(t) for t in labels]
    max_gt = max(counts, default=0)
    if num_denoising <= 0 or max_gt == 0:
        return None
    groups = max(1, num_denoising // max_gt)
    b, device = len(counts), labels[0].device
    gt_labels = torch.full((b, max_gt), num_classes, dtype=torch.int64, device=device)
    gt_boxes = torch.zeros((b, max_gt, 4), device=device)
    valid = torch.zeros((b, max_gt), dtype=torch.bool, device=device)
    for i, n in enumerate(counts):
        gt_labels[i, :n], gt_boxes[i, :n], valid[i, :n] = labels[i], boxes[i], True
    gt_labels, gt_boxes, valid = gt_labels.tile(1, 2 * groups), gt_boxes.tile(1, 2 * groups, 1), valid.tile(1, 2 * groups)
    negative = (torch.arange(2 * max_gt, device=device) >= max_gt).tile(groups)[None, :, None].float()  # [1, D, 1]
    positive_idx = torch.nonzero((1 - negative[..., 0]) * valid)[:, 1].split([n * groups for n in counts])
    noised_labels = _noise_labels(gt_labels, valid, num_classes, label_noise_ratio)
    noised_boxes = _noise_boxes(gt_boxes, negative, box_noise_scale)
    mask = denoising_attention_mask(2 * max_gt * groups, num_queries, 2 * max_gt, device)
    return DenoisingQueries(noised_labels, noised_boxes, mask, groups, list(positive_idx))


def _noise_labels(labels: Tensor, valid: Tensor, num_classes: int, ratio: float) -> Tensor:
    """Replaces each valid label by a uniform random class with probability ``ratio / 2``."""
    if ratio <= 0:
        return labels
    flip = torch.rand(labels.shape, device=labels.device) < ratio * 0.5
    random = torch.randint(0, num_classes, labels.shape, device=labels.device, dtype=torch.int32).long()
    return torch.where(flip & valid, random, labels)


def _noise_boxes(boxes: Tensor, negative: Tensor, scale: float) -> Tensor:
    """Moves each corner by ``U(0, 1)`` (positives) or ``U(1, 2)`` (negatives) half-sizes, randomly signed.

    Returns the inverse sigmoid of the noised, clipped cxcywh boxes.
    """
    if scale > 0:
        corners = cxcywh_to_xyxy(boxes)
        half = boxes[..., 2:].mul(0.5).tile(1, 1, 2) * scale
        sign = torch.randint_like(boxes, 0, 2) * 2.0 - 1.0
        part = torch.rand_like(boxes)
        part = ((part + 1.0) * negative + part * (1 - negative)) * sign
        boxes = xyxy_to_cxcywh((corners + part * half).clip(0.0, 1.0))
    return inverse_sigmoid(boxes)

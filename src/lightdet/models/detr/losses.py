"""Losses of the real-time DETRs as plain functions of matched predictions and targets.

All are normalised by ``num_boxes`` (the batch's ground-truth count, or the GO-LSD union's size) as in the
reference implementations. Boxes are normalised cxcywh.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lightdet.models.detr.box_ops import cxcywh_to_xyxy, paired_giou, paired_iou


def varifocal_loss(
    logits: Tensor, target_classes: Tensor, target_scores: Tensor, num_boxes: float, alpha: float = 0.75,
    gamma: float = 2.0,
) -> Tensor:
    """VFL: BCE towards the IoU of matched queries on their class, weighted ``alpha p^gamma`` on negatives.

    Args:
        logits: ``[B, Q, K]``.
        target_classes: ``int64 [B, Q]``, K for unmatched queries.
        target_scores: ``[B, Q]``, the IoU of each matched query with its target (0 elsewhere).
        num_boxes: normaliser.
    """
    k = logits.shape[-1]
    onehot = F.one_hot(target_classes, k + 1)[..., :k].to(logits.dtype)
    score = target_scores[..., None].to(logits.dtype) * onehot
    weight = alpha * logits.detach().sigmoid().pow(gamma) * (1 - onehot) + score
    loss = F.binary_cross_entropy_with_logits(logits, score, weight=weight, reduction="none")
    return loss.mean(1).sum() * logits.shape[1] / num_boxes


def l1_box_loss(boxes: Tensor, target_boxes: Tensor, num_boxes: float) -> Tensor:
    """Summed L1 distance of matched ``[M, 4]`` boxes / ``num_boxes``."""
    return F.l1_loss(boxes, target_boxes, reduction="sum") / num_boxes


def giou_loss(boxes: Tensor, target_boxes: Tensor, num_boxes: float) -> Tensor:
    """Summed ``1 - GIoU`` of matched ``[M, 4]`` cxcywh boxes / ``num_boxes``."""
    return (1 - paired_giou(cxcywh_to_xyxy(boxes), cxcywh_to_xyxy(target_boxes))).sum() / num_boxes


def matched_iou(boxes: Tensor, target_boxes: Tensor) -> Tensor:
    """IoU of matched ``[M, 4]`` cxcywh pairs (no gradient) -> ``[M]``."""
    return paired_iou(cxcywh_to_xyxy(boxes.detach()), cxcywh_to_xyxy(target_boxes))[0]


def fine_grained_localization_loss(
    corners: Tensor, target: Tensor, weight_right: Tensor, weight_left: Tensor, ious: Tensor, num_boxes: float
) -> Tensor:
    """D-FINE's FGL: interpolated cross-entropy of each edge distribution to its two target bins, IoU-weighted.

    Args:
        corners: ``[M * 4, R + 1]`` bin logits of the matched queries' edges.
        target: ``[M * 4]`` fractional target bins; ``weight_right``/``weight_left`` their interpolation.
        ious: ``[M]`` IoU of the matched boxes (each edge of a box gets its box's IoU).
        num_boxes: normaliser.
    """
    left = target.long()
    loss = F.cross_entropy(corners, left, reduction="none") * weight_left
    loss = loss + F.cross_entropy(corners, left + 1, reduction="none") * weight_right
    return (loss * ious.detach().repeat_interleave(4)).sum() / num_boxes


def distillation_mix(num_matched: int | Tensor, num_queries: int) -> tuple[Tensor, Tensor]:
    """DDF's mixing weights ``(sqrt(4 * matched), sqrt(4 * unmatched))`` of a batch with ``num_queries`` queries."""
    matched = torch.as_tensor(num_matched, dtype=torch.float32) * 4
    return matched.sqrt(), (num_queries * 4 - matched).sqrt()


def decoupled_distillation_loss(
    corners: Tensor, teacher_corners: Tensor, teacher_logits: Tensor, matched: tuple[Tensor, Tensor], ious: Tensor,
    temperature: float = 5.0, mix: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """D-FINE's DDF (GO-LSD): KL from the last layer's edge distributions to an earlier layer's.

    Each query is weighted by its IoU if matched, else by the teacher's best class score; matched and
    unmatched queries are averaged separately and mixed by ``mix`` (default :func:`distillation_mix` of this
    batch; the reference reuses the matching queries' mix for the denoising queries).

    Args:
        corners, teacher_corners: ``[B, Q, 4 * (R + 1)]`` (the teacher is detached).
        teacher_logits: ``[B, Q, K]`` of the last layer.
        matched: ``(batch index, query index)`` of the matched queries, ``[M]`` each (no duplicates).
        ious: ``[M]`` their IoUs.
        temperature: softening of both distributions.
    """
    b, q = teacher_logits.shape[:2]
    bins = corners.shape[-1] // 4
    weights = teacher_logits.detach().sigmoid().max(-1).values  # [B, Q]
    weights = weights.index_put(matched, ious.detach().to(weights.dtype))
    mask = torch.zeros_like(weights, dtype=torch.bool).index_put(matched, torch.tensor(True, device=weights.device))
    kl = F.kl_div(
        F.log_softmax(corners.reshape(-1, bins) / temperature, -1),
        F.softmax(teacher_corners.detach().reshape(-1, bins) / temperature, -1),
        reduction="none",
    ).sum(-1)  # [B * Q * 4]
    per_edge = weights.repeat_interleave(4) * temperature**2 * kl
    mask = mask.repeat_interleave(4)
    n_pos, n_neg = mix if mix is not None else distillation_mix(mask.sum() // 4, b * q)
    pos = per_edge[mask].mean() if mask.any() else per_edge.new_zeros(())
    neg = per_edge[~mask].mean() if (~mask).any() else per_edge.new_zeros(())
    return (pos * n_pos + neg * n_neg) / (n_pos + n_neg)

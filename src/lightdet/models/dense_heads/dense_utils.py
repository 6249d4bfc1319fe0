"""Pieces shared by the dense heads (RPN, RetinaNet, FCOS): conv towers, per-level scales, output flattening,
training targets from an assignment, and the test-time candidate selection + NMS."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lightdet.models.layers import ConvModule
from lightdet.models.ops.assigner import IGNORED
from lightdet.models.ops.nms import NMS, SoftNMS
from lightdet.structures import DetBatch, Detections


def build_tower(
    in_channels: int, feat_channels: int, num_convs: int, *, norm: str | None, conv_bias: bool | None
) -> nn.Sequential:
    """``num_convs`` 3x3 conv -> norm -> ReLU blocks (keys ``{i}.conv``, ``{i}.gn``); weights ~ N(0, 0.01).

    ``conv_bias``: whether the convs have a bias; ``None`` means "only without a norm" (MMDetection's
    ``'auto'``).
    """
    tower = nn.Sequential(*(
        ConvModule(
            in_channels if i == 0 else feat_channels, feat_channels, 3, padding=1, norm=norm, relu=True,
            bias=conv_bias,
        )
        for i in range(num_convs)
    ))  # fmt: skip
    for m in tower.modules():
        if isinstance(m, nn.Conv2d):
            init_conv(m)
    return tower


def init_conv(conv: nn.Conv2d, prior_prob: float | None = None) -> None:
    """Weights ~ N(0, 0.01); bias 0, or ``-log((1 - p) / p)`` so sigmoid outputs start at ``prior_prob``."""
    nn.init.normal_(conv.weight, std=0.01)
    if conv.bias is not None:
        bias = 0.0 if prior_prob is None else -math.log((1 - prior_prob) / prior_prob)
        nn.init.constant_(conv.bias, bias)


class Scale(nn.Module):
    """A learnable scalar multiplier (parameter ``scale``, shape ``[]``), one per FCOS level."""

    def __init__(self, init: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(init)))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale


def flatten_level(x: Tensor, channels: int) -> Tensor:
    """``[B, A * channels, H, W]`` -> ``[B, H * W * A, channels]`` (the anchors' ``(H, W, A)`` order)."""
    b, _, h, w = x.shape
    return x.view(b, -1, channels, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, channels)


def topk_candidates(scores: Tensor, score_thr: float, topk: int) -> tuple[Tensor, Tensor, Tensor]:
    """The ``topk`` highest (position, class) scores above ``score_thr`` of one level.

    Args:
        scores: ``[N, K]`` per-class probabilities of the level's N priors.

    Returns:
        ``(scores [k], prior_index [k], labels [k])``, highest first.
    """
    flat = scores.reshape(-1)
    index = torch.nonzero(flat > score_thr).squeeze(1)
    top, order = flat[index].topk(min(topk, index.numel()))
    index = index[order]
    k = scores.shape[1]
    return top, torch.div(index, k, rounding_mode="floor"), index % k


def nms_detections(
    boxes: Sequence[Tensor],
    scores: Sequence[Tensor],
    labels: Sequence[Tensor],
    nms: NMS | SoftNMS,
    max_per_img: int,
) -> Detections:
    """Joins one image's per-level candidates and applies class-wise NMS, keeping ``max_per_img``."""
    b, s, lab = torch.cat(list(boxes)), torch.cat(list(scores)), torch.cat(list(labels))
    keep, kept_scores = nms(b, s, lab, max_per_img)
    return Detections(boxes=b[keep], scores=kept_scores.float(), labels=lab[keep])


def outside_image(centres: Tensor, image_size: tuple[int, int]) -> Tensor:
    """bool ``[N]``: prior centres ``[N, 2]`` (x, y) in the batch padding beyond an image's ``(h, w)``.

    Such priors see only zeros; they are neither positive nor negative (MMDetection's valid flags).
    """
    h, w = image_size
    return (centres[:, 0] >= w) | (centres[:, 1] >= h)


@dataclass(frozen=True)
class DenseTargets:
    """Training targets of a batch whose images share the same N priors (anchors or points).

    Positives are taken in (image, prior) order everywhere, so ``x[positive]`` of any ``[B, N, ...]`` head
    output lines up with ``matched``.

    Attributes:
        gt_index: ``int64 [B, N]``: index into the image's ``gt_boxes``, or ``NEGATIVE`` / ``IGNORED``
            (priors near crowd regions, and priors centred in the batch padding, which see only zeros).
        labels: ``int64 [B, N]``: the class of positives, K (background) elsewhere.
        weights: ``float32 [B, N]``: 0 for ignored priors, 1 elsewhere.
        positive: ``bool [B, N]``.
        matched: ``[P, 4]``: the ground-truth box of each positive.
        gt_boxes: per image, its ``[G, 4]`` non-ignored ground-truth boxes (what ``gt_index`` points into).
    """

    gt_index: Tensor
    labels: Tensor
    weights: Tensor
    positive: Tensor
    matched: Tensor
    gt_boxes: list[Tensor]

    @property
    def num_pos(self) -> int:
        """The number of positives, at least 1 (the usual loss normaliser)."""
        return max(int(self.matched.shape[0]), 1)


#: ``assign(image_index, gt_boxes [G, 4], ignored_boxes [I, 4]) -> gt_index int64 [N]``.
AssignFn = Callable[[int, Tensor, Tensor], Tensor]


def assign_dense_targets(batch: DetBatch, centres: Tensor, num_classes: int, assign: AssignFn) -> DenseTargets:
    """Assigns every image of ``batch`` and assembles the targets (the one loop the dense heads share).

    Args:
        batch: ground truth; boxes flagged ``ignore`` (crowd) are passed to ``assign`` as ignored regions.
        centres: ``[N, 2]`` (x, y) prior centres: those beyond an image's own size are ignored.
        num_classes: K; negatives get label K.
        assign: the head's assigner for image ``i`` (it may close over per-level ranges, strides ...).
    """
    gt_index, kept_boxes, kept_labels = [], [], []
    for i, (boxes, labels, ignore, meta) in enumerate(zip(batch.boxes, batch.labels, batch.ignore, batch.metas)):
        index = assign(i, boxes[~ignore], boxes[ignore])
        gt_index.append(index.masked_fill(outside_image(centres, meta.img_size), IGNORED))
        kept_boxes.append(boxes[~ignore])
        kept_labels.append(labels[~ignore])
    index = torch.stack(gt_index)  # [B, N]
    positive = index >= 0
    labels = torch.full_like(index, num_classes)
    matched = [b[i[p]] for b, i, p in zip(kept_boxes, gt_index, positive)]
    labels[positive] = torch.cat([lab[i[p]] for lab, i, p in zip(kept_labels, gt_index, positive)])
    return DenseTargets(
        gt_index=index,
        labels=labels,
        weights=(index != IGNORED).float(),
        positive=positive,
        matched=torch.cat(matched) if matched else centres.new_zeros((0, 4)),
        gt_boxes=kept_boxes,
    )

"""What the second stage trains on: per-image sampled RoIs, and the protocol of optional RoI branches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from lightdet.models.ops.assigner import MaxIoUAssigner
from lightdet.models.ops.sampler import RandomSampler
from lightdet.structures import DetBatch, Detections


@dataclass
class SampledRoIs:
    """One image's sampled RoIs, positives first.

    Attributes:
        boxes: ``[S, 4]`` RoIs (proposals, plus ground truth when added as proposals), input pixels.
        labels: ``int64 [S]`` class targets, ``num_classes`` (background) for negatives.
        gt_boxes: ``[S, 4]`` matched ground-truth boxes (zeros for negatives).
        gt_index: ``int64 [S]`` index of the matched box in the image's ``DetBatch`` lists (``boxes``,
            ``labels``, ``masks``), ``-1`` for negatives.
        num_pos: number of positives (the first ``num_pos`` rows).
        is_gt: optional ``bool [S]``, True for RoIs that are ground-truth boxes added as proposals (a cascade
            does not pass those on as refined proposals to its next stage).
    """

    boxes: Tensor
    labels: Tensor
    gt_boxes: Tensor
    gt_index: Tensor
    num_pos: int
    is_gt: Tensor | None = None


@torch.no_grad()
def sample_rois(
    proposals: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    gt_ignore: Tensor,
    *,
    assigner: MaxIoUAssigner,
    sampler: RandomSampler,
    num_classes: int,
    add_gt_as_proposals: bool = True,
) -> SampledRoIs:
    """Assigns and samples one image's proposals ``[P, 4]`` against its ground truth ``[G, 4]``.

    Ignored ground truth is no target; RoIs lying mostly inside it are neither positive nor negative.
    """
    kept = torch.nonzero(~gt_ignore).squeeze(1)
    real = gt_boxes[kept]
    is_gt = torch.zeros(proposals.shape[0], dtype=torch.bool, device=proposals.device)
    if add_gt_as_proposals:
        proposals = torch.cat([real, proposals])
        is_gt = torch.cat([torch.ones(real.shape[0], dtype=torch.bool, device=is_gt.device), is_gt])
    result = assigner.assign(proposals, real, gt_boxes[gt_ignore])
    pos, neg = sampler.sample(result.gt_index)
    matched = result.gt_index[pos]
    order = torch.cat([pos, neg])
    boxes = proposals[order]
    labels = torch.full((boxes.shape[0],), num_classes, dtype=torch.int64, device=boxes.device)
    labels[: pos.numel()] = gt_labels[kept][matched]
    matched_boxes = boxes.new_zeros(boxes.shape)
    matched_boxes[: pos.numel()] = real[matched]
    gt_index = torch.full_like(labels, -1)
    gt_index[: pos.numel()] = kept[matched]
    return SampledRoIs(boxes, labels, matched_boxes, gt_index, int(pos.numel()), is_gt[order])


def rois_from_boxes(boxes: Sequence[Tensor]) -> Tensor:
    """Per-image ``[N_i, 4]`` boxes -> ``[sum N_i, 5]`` RoIs ``(batch_index, x1, y1, x2, y2)``."""
    index = [torch.full((len(b), 1), i, dtype=b.dtype, device=b.device) for i, b in enumerate(boxes)]
    return torch.cat([torch.cat(index), torch.cat(list(boxes))], dim=1)


@runtime_checkable
class RoIBranch(Protocol):
    """An extra second-stage branch (e.g. a mask head) composed into a RoI head.

    ``loss`` receives the same sampled RoIs as the box branch (its positives are the first ``num_pos`` rows of
    each :class:`SampledRoIs`, with ``gt_index`` into ``batch``'s per-image lists) and returns named losses.
    ``predict`` receives the final detections in input pixels and returns them with its outputs attached
    (boxes unchanged); ``batch.metas`` gives the sizes needed to produce outputs in original coordinates.
    """

    def loss(
        self, feats: Sequence[Tensor], samples: list[SampledRoIs], batch: DetBatch
    ) -> dict[str, Tensor]: ...

    def predict(
        self, feats: Sequence[Tensor], detections: list[Detections], batch: DetBatch
    ) -> list[Detections]: ...

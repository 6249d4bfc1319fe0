"""What the second stage trains on: per-image sampled RoIs, and the protocol of optional RoI branches."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

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
    """

    boxes: Tensor
    labels: Tensor
    gt_boxes: Tensor
    gt_index: Tensor
    num_pos: int


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

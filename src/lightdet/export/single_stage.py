"""Export graphs of :class:`~lightdet.models.SingleStageDetector`: RetinaNet, FCOS and RTMDet, batched over
images.

Per level the eager heads take the top ``nms_pre`` (position, class) scores *among those above*
``score_thr``; here the top ``nms_pre`` of all scores are taken and those not above ``score_thr`` dropped,
which selects the same candidates without a data-dependent ``topk`` size. Then class-wise NMS per image and
the best ``max_per_img`` per image, as :func:`~lightdet.models.dense_heads.dense_utils.nms_detections`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lightdet.export.errors import ExportError
from lightdet.export.graph import GraphHead
from lightdet.export.ops import (
    Size,
    batch_positions,
    clip_to_image,
    grid_anchors,
    grid_points,
    grouped_nms,
    keep_per_image,
    topk_count,
)
from lightdet.export.two_stage import nms_threshold
from lightdet.models.dense_heads.fcos_head import FCOSHead
from lightdet.models.dense_heads.retina_head import RetinaHead
from lightdet.models.dense_heads.rtmdet_head import RTMDetHead
from lightdet.models.detectors import SingleStageDetector
from lightdet.models.ops.points import distance_to_box


def level_topk(scores: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """``scores [B, N, K]`` -> the top ``k`` per image: ``(scores [B, k], prior [B, k], label [B, k])``."""
    num_classes = scores.shape[2]
    flat = scores.flatten(1)
    top, index = flat.topk(topk_count(flat, k, 1), dim=1)
    return top, torch.div(index, num_classes, rounding_mode="floor"), index % num_classes


def gather_rows(x: Tensor, index: Tensor) -> Tensor:
    """``x [B, N, C]``, ``index [B, k]`` -> ``[B, k, C]``."""
    return x.gather(1, index[..., None].expand(-1, -1, x.shape[-1]))


class DenseGraphHead(GraphHead):
    """Shared tail of the dense heads: candidates of all levels -> threshold, class-wise NMS, top per image.

    Subclasses implement :meth:`candidates` (per-level decoded boxes, scores and labels, ``[B, n, ...]``).
    """

    #: drop boxes left without area by the clipping (as the eager head does)
    drop_empty: bool = False

    def __init__(self, detector: SingleStageDetector, head: RetinaHead | FCOSHead | RTMDetHead) -> None:
        super().__init__()
        self.detector = detector
        self.head = head
        self.score_threshold = float(head.score_thr)
        self.iou_threshold = nms_threshold(head.nms, type(head).__name__)

    @abstractmethod
    def candidates(
        self, feats: Sequence[Tensor], padded: tuple[Size, Size]
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``boxes [B, n, 4]`` (not clipped), ``scores [B, n]``, ``labels [B, n]`` and the score compared
        with ``score_thr`` ``[B, n]``, over all levels."""

    def forward(self, images: Tensor, height: Size, width: Size) -> tuple[Tensor, ...]:
        feats = self.detector.extract_feat(images)
        boxes, scores, labels, gate = self.candidates(feats, (images.shape[-2], images.shape[-1]))
        boxes = clip_to_image(boxes, height, width)
        batch = batch_positions(scores)
        valid = gate > self.score_threshold
        if self.drop_empty:
            valid = valid & (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])
        boxes, scores, labels, batch = boxes[valid], scores[valid], labels[valid], batch[valid]
        keep = grouped_nms(boxes, scores, batch * self.head.num_classes + labels, self.iou_threshold)
        keep = keep_per_image(keep, batch, images.shape[0], self.head.max_per_img)
        return boxes[keep], scores[keep].float(), labels[keep], batch[keep]


class RetinaGraphHead(DenseGraphHead):
    """:class:`RetinaHead` at test time: sigmoid scores of every anchor and class, deltas decoded."""

    family = "retinanet"

    def candidates(
        self, feats: Sequence[Tensor], padded: tuple[Size, Size]
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        logits, deltas = self.head(feats)
        anchors = grid_anchors(self.head.anchor_generator, feats, padded)
        boxes, scores, labels = [], [], []
        for lg, dl, an in zip(logits, deltas, anchors):
            top, prior, label = level_topk(lg.float().sigmoid(), self.head.nms_pre)
            decoded = self.head.box_coder.decode(
                an[prior].reshape(-1, 4), gather_rows(dl.float(), prior).reshape(-1, 4)
            )
            boxes.append(decoded.reshape(prior.shape[0], -1, 4))
            scores.append(top)
            labels.append(label)
        scores_all = torch.cat(scores, 1)
        return torch.cat(boxes, 1), scores_all, torch.cat(labels, 1), scores_all


class FCOSGraphHead(DenseGraphHead):
    """:class:`FCOSHead` at test time: class scores combined with centre-ness by its ``score_mode``."""

    family = "fcos"

    def candidates(
        self, feats: Sequence[Tensor], padded: tuple[Size, Size]
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        out = self.head(feats)
        points = grid_points(self.head.point_generator, feats, padded)
        boxes, scores, labels, gates = [], [], [], []
        for lg, dist, ctr, pts in zip(out.logits, out.distances, out.centerness, points):
            cls_scores, ctr_scores = lg.float().sigmoid(), ctr.float().sigmoid()  # [B, N, K], [B, N]
            if self.head.score_mode == "sqrt":
                top, prior, label = level_topk((cls_scores * ctr_scores[..., None]).sqrt(), self.head.nms_pre)
                score = top
            else:
                top, prior, label = level_topk(cls_scores, self.head.nms_pre)
                score = top * ctr_scores.gather(1, prior)
            picked = gather_rows(dist, prior).reshape(-1, 4)
            boxes.append(distance_to_box(pts[prior].reshape(-1, 2), picked).reshape(prior.shape[0], -1, 4))
            scores.append(score)
            labels.append(label)
            gates.append(top)
        return torch.cat(boxes, 1), torch.cat(scores, 1), torch.cat(labels, 1), torch.cat(gates, 1)


class RTMDetGraphHead(DenseGraphHead):
    """:class:`RTMDetHead` at test time: sigmoid class scores, distances from the points decoded, boxes that
    the clipping leaves empty dropped."""

    family = "rtmdet"
    drop_empty = True

    def candidates(
        self, feats: Sequence[Tensor], padded: tuple[Size, Size]
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        out = self.head(feats)
        points = grid_points(self.head.point_generator, feats, padded)
        boxes, scores, labels = [], [], []
        for lg, dist, pts in zip(out.logits, out.distances, points):
            top, prior, label = level_topk(lg.float().sigmoid(), self.head.nms_pre)
            picked = gather_rows(dist.float(), prior).reshape(-1, 4)
            boxes.append(distance_to_box(pts[prior].reshape(-1, 2), picked).reshape(prior.shape[0], -1, 4))
            scores.append(top)
            labels.append(label)
        scores_all = torch.cat(scores, 1)
        return torch.cat(boxes, 1), scores_all, torch.cat(labels, 1), scores_all


def single_stage_head(detector: SingleStageDetector) -> DenseGraphHead:
    """The graph head of a RetinaNet, FCOS or RTMDet detector."""
    head: nn.Module = detector.bbox_head
    if isinstance(head, RTMDetHead):
        return RTMDetGraphHead(detector, head)
    if isinstance(head, FCOSHead):
        return FCOSGraphHead(detector, head)
    if isinstance(head, RetinaHead):
        return RetinaGraphHead(detector, head)
    raise ExportError(
        f"SingleStageDetector with a {type(head).__name__} cannot be exported: the export graph knows "
        "RetinaHead, FCOSHead and RTMDetHead"
    )

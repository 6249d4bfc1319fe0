"""Export graph of :class:`~lightdet.models.TwoStageDetector`: Faster R-CNN, Mask R-CNN and Cascade (Mask)
R-CNN, batched over images with flat ``[N, ...]`` rows and a ``batch_index``.

The steps mirror :meth:`RPNHead.proposals`, :meth:`StandardRoIHead.predict` / :meth:`CascadeRoIHead.predict`
and :func:`postprocess_detections` one to one; the parity tests hold them to the eager results.
"""

from __future__ import annotations

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
    grouped_nms,
    keep_per_image,
    multi_level_roi_align,
    topk_count,
)
from lightdet.models.dense_heads.rpn_head import RPNHead
from lightdet.models.detectors import TwoStageDetector
from lightdet.models.ops.boxes import large_box_mask
from lightdet.models.ops.nms import NMS
from lightdet.models.roi_heads.bbox_head import BBoxHead
from lightdet.models.roi_heads.cascade_roi_head import CascadeRoIHead
from lightdet.models.roi_heads.mask_head import FCNMaskHead, mean_label_probs
from lightdet.models.roi_heads.standard_roi_head import StandardRoIHead


def nms_threshold(nms: object, owner: str) -> float:
    """The IoU threshold of a hard :class:`NMS`; anything else (Soft-NMS) has no export graph."""
    if not isinstance(nms, NMS):
        raise ExportError(
            f"{owner}: {nms!r} cannot be exported: Soft-NMS decays scores in a Python loop whose length "
            "depends on the data; export a config with hard NMS (lightdet.models.NMS)"
        )
    return float(nms.iou_threshold)


class RPNGraph(nn.Module):
    """Test-time proposals of a batch: top-k per level, decode, clip, drop small boxes, NMS per level and
    image, the best ``post_nms_top_n`` per image. Returns ``boxes [P, 4]`` and ``batch_index [P]``."""

    def __init__(self, rpn: RPNHead) -> None:
        super().__init__()
        self.rpn = rpn
        self.pre_nms_top_n, self.post_nms_top_n = rpn.test_top_n
        self.iou_threshold = float(rpn.nms_iou_thr)

    def candidates(self, feats: Sequence[Tensor], padded: tuple[Size, Size]) -> tuple[Tensor, Tensor, Tensor]:
        """``boxes [B, n, 4]`` (not clipped), ``scores [B, n]`` and ``levels [B, n]`` of every level's top-k."""
        logits, deltas = self.rpn(feats)
        anchors = grid_anchors(self.rpn.anchor_generator, feats, padded)
        boxes, scores, levels = [], [], []
        for level, (lg, dl, an) in enumerate(zip(logits, deltas, anchors)):
            top, idx = lg.float().topk(topk_count(lg, self.pre_nms_top_n, 1), dim=1)  # [B, k]
            picked = dl.float().gather(1, idx[..., None].expand(-1, -1, 4))  # [B, k, 4]
            decoded = self.rpn.box_coder.decode(an[idx].reshape(-1, 4), picked.reshape(-1, 4))
            boxes.append(decoded.reshape(idx.shape[0], -1, 4))
            scores.append(top.sigmoid())
            levels.append(torch.full_like(idx, level))
        return torch.cat(boxes, 1), torch.cat(scores, 1), torch.cat(levels, 1)

    def forward(
        self, feats: Sequence[Tensor], padded: tuple[Size, Size], size: tuple[Size, Size]
    ) -> tuple[Tensor, Tensor]:
        boxes, scores, levels = self.candidates(feats, padded)
        boxes = clip_to_image(boxes, *size)
        batch = batch_positions(scores)
        valid = large_box_mask(boxes, self.rpn.min_box_size)
        boxes, scores, levels, batch = boxes[valid], scores[valid], levels[valid], batch[valid]
        keep = grouped_nms(boxes, scores, batch * len(feats) + levels, self.iou_threshold)
        keep = keep_per_image(keep, batch, feats[0].shape[0], self.post_nms_top_n)
        return boxes[keep], batch[keep]


def rois_of(boxes: Tensor, batch_index: Tensor) -> Tensor:
    """``[R, 5]`` RoIs ``(batch_index, x1, y1, x2, y2)`` from flat boxes and their images."""
    return torch.cat([batch_index.to(boxes.dtype)[:, None], boxes], 1)


def decode_per_class(head: BBoxHead, rois: Tensor, deltas: Tensor, size: tuple[Size, Size]) -> Tensor:
    """``rois [R, 5]``, ``deltas [R, 4K or 4]`` -> clipped boxes ``[R, K, 4]`` (:meth:`BBoxHead.predict_boxes`)."""
    per_class = deltas.float().reshape(deltas.shape[0], -1, 4)
    boxes = clip_to_image(head.box_coder.decode(rois[:, 1:].float(), per_class), *size)
    return boxes.expand(-1, head.num_classes, 4)


class DetectionsGraph(nn.Module):
    """Per-class boxes ``[R, K, 4]`` and scores ``[R, K]`` -> thresholded, class-wise suppressed, the best
    ``max_per_img`` per image (:func:`~lightdet.models.roi_heads.standard_roi_head.postprocess_detections`)."""

    def __init__(
        self, score_thr: float, iou_threshold: float, max_per_img: int, min_box_size: float | None
    ) -> None:
        super().__init__()
        self.score_thr, self.iou_threshold = float(score_thr), iou_threshold
        self.max_per_img, self.min_box_size = max_per_img, min_box_size

    def forward(
        self, boxes: Tensor, scores: Tensor, roi_batch: Tensor, batch_size: Size
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        num_classes = scores.shape[1]
        labels = torch.arange(num_classes, device=scores.device).expand_as(scores)
        batch = roi_batch[:, None].expand_as(scores)
        boxes, scores = boxes.reshape(-1, 4), scores.reshape(-1)
        labels, batch = labels.reshape(-1), batch.reshape(-1)
        valid = scores > self.score_thr
        if self.min_box_size is not None:
            valid = valid & large_box_mask(boxes, self.min_box_size)
        boxes, scores, labels, batch = boxes[valid], scores[valid], labels[valid], batch[valid]
        keep = grouped_nms(boxes, scores, batch * num_classes + labels, self.iou_threshold)
        keep = keep_per_image(keep, batch, batch_size, self.max_per_img)
        return boxes[keep].float(), scores[keep].float(), labels[keep], batch[keep]


def mask_probs(heads: Sequence[FCNMaskHead], feats: Sequence[Tensor], rois: Tensor, labels: Tensor) -> Tensor:
    """``[N, M, M]`` mask probabilities of each detection's label, averaged over ``heads``
    (:func:`~lightdet.models.roi_heads.mask_head.mean_label_probs` with the graph's RoI pooling)."""
    return mean_label_probs(heads, labels, lambda extractor: multi_level_roi_align(extractor, feats, rois))


def _check_mask_head(head: nn.Module | None, owner: str) -> FCNMaskHead | None:
    if head is not None and not isinstance(head, FCNMaskHead):
        raise ExportError(f"{owner}: mask head {type(head).__name__} has no export graph (only FCNMaskHead)")
    return head


class StandardRoIGraph(nn.Module):
    """:class:`StandardRoIHead` at test time: ``(feats, rois, B, size)`` -> detections (+ mask probabilities)."""

    def __init__(self, roi_head: StandardRoIHead) -> None:
        super().__init__()
        self.roi_head = roi_head
        self.mask_head = _check_mask_head(roi_head.mask_head, "StandardRoIHead")
        self.postprocess = DetectionsGraph(
            roi_head.score_thr,
            nms_threshold(roi_head.nms, "StandardRoIHead"),
            roi_head.max_per_img,
            roi_head.min_box_size,
        )

    def forward(
        self, feats: Sequence[Tensor], rois: Tensor, batch_size: Size, size: tuple[Size, Size]
    ) -> tuple[Tensor, ...]:
        head = self.roi_head.bbox_head
        cls_logits, deltas = head(multi_level_roi_align(self.roi_head.bbox_roi_extractor, feats, rois))
        scores = cls_logits.float().softmax(-1)[:, : head.num_classes]
        boxes = decode_per_class(head, rois, deltas, size)
        detections = self.postprocess(boxes, scores, rois[:, 0].long(), batch_size)
        if self.mask_head is None:
            return detections
        boxes, _, labels, batch = detections
        return (*detections, mask_probs([self.mask_head], feats, rois_of(boxes, batch), labels))


class CascadeRoIGraph(nn.Module):
    """:class:`CascadeRoIHead` at test time: stages in sequence, class logits averaged over the stages, boxes of
    the last stage, mask probabilities averaged over the stages' mask heads."""

    def __init__(self, roi_head: CascadeRoIHead) -> None:
        super().__init__()
        self.roi_head = roi_head
        self.mask_heads = [_check_mask_head(s.mask_head, "CascadeStage") for s in roi_head.stages]
        self.postprocess = DetectionsGraph(
            roi_head.score_thr,
            nms_threshold(roi_head.nms, "CascadeRoIHead"),
            roi_head.max_per_img,
            roi_head.min_box_size,
        )

    def refine(
        self, boxes: Tensor, cls_logits: Tensor, deltas: Tensor, head: BBoxHead, size: tuple[Size, Size]
    ) -> Tensor:
        """Each box refined by the deltas of its best class (:meth:`CascadeStage.refine`)."""
        labels = cls_logits[:, : head.num_classes].argmax(1)
        per_class = deltas.float().reshape(deltas.shape[0], -1, 4)
        channel = torch.zeros_like(labels) if per_class.shape[1] == 1 else labels
        picked = per_class[torch.arange(per_class.shape[0], device=deltas.device), channel]
        return clip_to_image(head.box_coder.decode(boxes.float(), picked), *size)

    def forward(
        self, feats: Sequence[Tensor], rois: Tensor, batch_size: Size, size: tuple[Size, Size]
    ) -> tuple[Tensor, ...]:
        stages = list(self.roi_head.stages)
        batch, boxes = rois[:, 0], rois[:, 1:]
        logits_sum = None
        for t, stage in enumerate(stages):
            pooled = multi_level_roi_align(
                stage.bbox_roi_extractor, feats, torch.cat([batch[:, None], boxes], 1)
            )
            cls_logits, deltas = stage.bbox_head(pooled)
            logits_sum = cls_logits.float() if logits_sum is None else logits_sum + cls_logits.float()
            if t + 1 < len(stages):
                boxes = self.refine(boxes, cls_logits, deltas, stage.bbox_head, size)
        head = stages[-1].bbox_head
        scores = (logits_sum / len(stages)).softmax(-1)[:, : head.num_classes]
        per_class = decode_per_class(head, torch.cat([batch[:, None], boxes], 1), deltas, size)
        detections = self.postprocess(per_class, scores, batch.long(), batch_size)
        if self.mask_heads[0] is None:
            return detections
        boxes, _, labels, det_batch = detections
        det_rois = rois_of(boxes, det_batch)
        return (*detections, mask_probs(self.mask_heads, feats, det_rois, labels))


class TwoStageGraphHead(GraphHead):
    """Backbone, neck, RPN and RoI head of a :class:`TwoStageDetector` as one export graph head."""

    def __init__(self, detector: TwoStageDetector) -> None:
        super().__init__()
        self.detector = detector
        self.rpn = RPNGraph(detector.rpn_head)
        roi_head = detector.roi_head
        if isinstance(roi_head, CascadeRoIHead):
            self.roi = CascadeRoIGraph(roi_head)
            masks = roi_head.stages[-1].mask_head
            self.family = "cascade_mask_rcnn" if masks is not None else "cascade_rcnn"
        elif isinstance(roi_head, StandardRoIHead):
            self.roi = StandardRoIGraph(roi_head)
            masks = roi_head.mask_head
            self.family = "mask_rcnn" if masks is not None else "faster_rcnn"
        else:
            raise ExportError(
                f"TwoStageDetector with a {type(roi_head).__name__} cannot be exported: the export graph knows "
                "StandardRoIHead and CascadeRoIHead"
            )
        self.score_threshold = float(roi_head.score_thr)
        self.mask_size = masks.mask_size if masks is not None else None

    def forward(self, images: Tensor, height: Size, width: Size) -> tuple[Tensor, ...]:
        feats = self.detector.extract_feat(images)
        padded = (images.shape[-2], images.shape[-1])
        boxes, batch = self.rpn(feats, padded, (height, width))
        return self.roi(feats, rois_of(boxes, batch), images.shape[0], (height, width))

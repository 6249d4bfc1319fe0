"""The second stage of a two-stage detector: sample RoIs, pool them, classify and refine boxes."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lightdet.models.ops.assigner import MaxIoUAssigner
from lightdet.models.ops.boxes import large_box_mask
from lightdet.models.ops.nms import NMS, SoftNMS
from lightdet.models.ops.roi_extractor import MultiLevelRoIAlign
from lightdet.models.ops.sampler import RandomSampler
from lightdet.models.roi_heads.bbox_head import BBoxHead
from lightdet.models.roi_heads.sampling import RoIBranch, SampledRoIs, rois_from_boxes, sample_rois
from lightdet.structures import DetBatch, Detections


class StandardRoIHead(nn.Module):
    """Box branch of Faster R-CNN, with an optional extra branch (e.g. masks) composed in.

    Args:
        bbox_roi_extractor: pools ``[R, C, 7, 7]`` features per RoI.
        bbox_head: classifies and regresses the pooled features.
        assigner, sampler: training targets (MMDetection: IoU 0.5/0.5 without low-quality matches; 512 RoIs
            per image, a quarter positive).
        add_gt_as_proposals: add each image's (non-ignored) ground-truth boxes to its proposals in training.
        score_thr: test-time minimum class score.
        nms: class-wise suppression at test time, :class:`NMS` or :class:`SoftNMS`.
        max_per_img: detections kept per image.
        min_box_size: at test time drop boxes whose width or height is not above this (``None`` keeps all,
            MMDetection; torchvision drops boxes under 0.01 px).
        mask_head: optional :class:`RoIBranch` trained on the positives and run on the final detections.
    """

    def __init__(
        self,
        bbox_roi_extractor: MultiLevelRoIAlign,
        bbox_head: BBoxHead,
        *,
        assigner: MaxIoUAssigner,
        sampler: RandomSampler,
        add_gt_as_proposals: bool = True,
        score_thr: float = 0.05,
        nms: NMS | SoftNMS | None = None,
        max_per_img: int = 100,
        min_box_size: float | None = None,
        mask_head: RoIBranch | None = None,
    ) -> None:
        super().__init__()
        if mask_head is not None and not isinstance(mask_head, RoIBranch):
            raise TypeError(f"StandardRoIHead: mask_head {type(mask_head).__name__} lacks loss()/predict()")
        self.bbox_roi_extractor, self.bbox_head = bbox_roi_extractor, bbox_head
        self.assigner, self.sampler = assigner, sampler
        self.add_gt_as_proposals = add_gt_as_proposals
        self.score_thr = score_thr
        self.nms = nms if nms is not None else NMS(0.5)
        self.max_per_img = max_per_img
        self.min_box_size = min_box_size
        self.mask_head = mask_head

    @property
    def num_classes(self) -> int:
        return self.bbox_head.num_classes

    def sample(
        self, proposals: Tensor, gt_boxes: Tensor, gt_labels: Tensor, gt_ignore: Tensor
    ) -> SampledRoIs:
        """Assigns and samples one image's proposals ``[P, 4]`` against its ground truth ``[G, 4]``."""
        return sample_rois(
            proposals, gt_boxes, gt_labels, gt_ignore, assigner=self.assigner, sampler=self.sampler,
            num_classes=self.num_classes, add_gt_as_proposals=self.add_gt_as_proposals,
        )

    def loss(
        self, feats: Sequence[Tensor], proposals: Sequence[Tensor], batch: DetBatch
    ) -> dict[str, Tensor]:
        """Training losses from each image's proposals ``[P_i, 4]`` (detached) and the batch's targets."""
        samples = [
            self.sample(p.detach(), b, lab, ign)
            for p, b, lab, ign in zip(proposals, batch.boxes, batch.labels, batch.ignore)
        ]
        rois = rois_from_boxes([s.boxes for s in samples])
        cls_logits, deltas = self.bbox_head(self.bbox_roi_extractor(feats, rois))
        losses = self.bbox_head.loss(
            cls_logits, deltas, rois[:, 1:], torch.cat([s.labels for s in samples]),
            torch.cat([s.gt_boxes for s in samples]),
        )
        if self.mask_head is not None:
            losses.update(self.mask_head.loss(feats, samples, batch))
        return losses

    @torch.no_grad()
    def predict(
        self, feats: Sequence[Tensor], proposals: Sequence[Tensor], batch: DetBatch
    ) -> list[Detections]:
        """Detections of each image in input pixels (boxes clipped to ``metas[i].img_size``)."""
        rois = rois_from_boxes(list(proposals))
        cls_logits, deltas = self.bbox_head(self.bbox_roi_extractor(feats, rois))
        counts = [len(p) for p in proposals]
        detections = []
        per_image = zip(cls_logits.split(counts), deltas.split(counts), proposals, batch.metas)
        for cls_i, deltas_i, rois_i, meta in per_image:
            boxes, scores = self.bbox_head.predict_boxes(cls_i, deltas_i, rois_i, meta.img_size)
            detections.append(self.postprocess(boxes, scores))
        if self.mask_head is not None:
            detections = self.mask_head.predict(feats, detections, batch)
        return detections

    def postprocess(self, boxes: Tensor, scores: Tensor) -> Detections:
        """Per-class boxes ``[R, K, 4]``, scores ``[R, K]`` -> thresholded, suppressed, top-N detections."""
        return postprocess_detections(
            boxes, scores, score_thr=self.score_thr, nms=self.nms, max_per_img=self.max_per_img,
            min_box_size=self.min_box_size,
        )


def postprocess_detections(
    boxes: Tensor,
    scores: Tensor,
    *,
    score_thr: float,
    nms: NMS | SoftNMS,
    max_per_img: int,
    min_box_size: float | None = None,
) -> Detections:
    """Per-class boxes ``[R, K, 4]``, scores ``[R, K]`` -> detections above ``score_thr`` (and larger than
    ``min_box_size`` when given), suppressed class-wise by ``nms``, the best ``max_per_img`` kept."""
    labels = torch.arange(scores.shape[1], device=scores.device).expand_as(scores)
    boxes, scores, labels = boxes.reshape(-1, 4), scores.reshape(-1), labels.reshape(-1)
    valid = scores > score_thr
    if min_box_size is not None:
        valid &= large_box_mask(boxes, min_box_size)
    boxes, scores, labels = boxes[valid], scores[valid], labels[valid]
    keep, kept_scores = nms(boxes, scores, labels, max_per_img)
    return Detections(boxes=boxes[keep].float(), scores=kept_scores.float(), labels=labels[keep])

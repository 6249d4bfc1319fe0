"""Cascade R-CNN (Cai and Vasconcelos, 2018): box heads in sequence, each trained at a higher IoU on the boxes
the previous one refined; optionally a mask branch per stage (Cascade Mask R-CNN)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lightdet.models.ops.assigner import MaxIoUAssigner
from lightdet.models.ops.nms import NMS, SoftNMS
from lightdet.models.ops.roi_extractor import MultiLevelRoIAlign
from lightdet.models.ops.sampler import RandomSampler
from lightdet.models.roi_heads.bbox_head import BBoxHead
from lightdet.models.roi_heads.mask_head import FCNMaskHead, attach_masks, mean_label_probs
from lightdet.models.roi_heads.sampling import SampledRoIs, rois_from_boxes, sample_rois
from lightdet.models.roi_heads.standard_roi_head import postprocess_detections
from lightdet.structures import DetBatch, Detections


class CascadeStage(nn.Module):
    """One stage of a cascade: its RoI pooling, box head, training targets and optional mask branch.

    Args:
        bbox_roi_extractor, bbox_head: as in :class:`~lightdet.models.StandardRoIHead`; the head's box coder
            carries the stage's stds (MMDetection: 0.1/0.2, 0.05/0.1, 0.033/0.067).
        assigner, sampler: the stage's targets (MMDetection: IoU 0.5, 0.6, 0.7; 512 RoIs, a quarter positive).
        loss_weight: multiplies the stage's losses (MMDetection: 1, 0.5, 0.25).
        add_gt_as_proposals: add the (non-ignored) ground truth to the stage's input boxes in training.
        mask_head: optional mask branch trained on the stage's positives.
    """

    def __init__(
        self,
        bbox_roi_extractor: MultiLevelRoIAlign,
        bbox_head: BBoxHead,
        *,
        assigner: MaxIoUAssigner,
        sampler: RandomSampler,
        loss_weight: float = 1.0,
        add_gt_as_proposals: bool = True,
        mask_head: FCNMaskHead | None = None,
    ) -> None:
        super().__init__()
        self.bbox_roi_extractor, self.bbox_head = bbox_roi_extractor, bbox_head
        self.assigner, self.sampler = assigner, sampler
        self.loss_weight = loss_weight
        self.add_gt_as_proposals = add_gt_as_proposals
        self.mask_head = mask_head

    def sample(self, proposals: Sequence[Tensor], batch: DetBatch) -> list[SampledRoIs]:
        """Per image: assign and sample the (detached) input boxes ``[P_i, 4]``."""
        return [
            sample_rois(
                p.detach(), b, lab, ign, assigner=self.assigner, sampler=self.sampler,
                num_classes=self.bbox_head.num_classes, add_gt_as_proposals=self.add_gt_as_proposals,
            )
            for p, b, lab, ign in zip(proposals, batch.boxes, batch.labels, batch.ignore)
        ]

    def forward(self, feats: Sequence[Tensor], rois: Tensor) -> tuple[Tensor, Tensor]:
        """``rois [R, 5]`` -> ``(cls_logits [R, K+1], deltas [R, 4] or [R, 4K])``."""
        return self.bbox_head(self.bbox_roi_extractor(feats, rois))

    def refine(self, boxes: Tensor, labels: Tensor, deltas: Tensor, image_size: tuple[int, int]) -> Tensor:
        """Applies each box's deltas (of class ``labels``, for class-specific heads) -> ``[R, 4]`` clipped."""
        per_class = deltas.float().view(deltas.shape[0], -1, 4)
        channel = torch.zeros_like(labels) if per_class.shape[1] == 1 else labels
        picked = per_class[torch.arange(per_class.shape[0], device=deltas.device), channel]
        return self.bbox_head.box_coder.decode(boxes.float(), picked, image_size)


class CascadeRoIHead(nn.Module):
    """Runs ``stages`` in sequence; each stage's boxes are the previous stage's refined boxes.

    Training: stage ``t`` samples its RoIs from stage ``t-1``'s refinement of that stage's own sampled RoIs
    (ground-truth RoIs dropped, background RoIs regressed as their best foreground class), and its losses are
    reported with the suffix ``_s{t}``, already multiplied by the stage's ``loss_weight``.
    Test: class logits are averaged over the stages before the softmax (MMDetection), boxes come from the last
    stage, and masks (when the stages have mask heads) are the mean of every stage's mask probabilities.

    Args:
        stages: the :class:`CascadeStage` modules, first to last (all with the same classes).
        score_thr, nms, max_per_img, min_box_size: test-time post-processing, as in
            :class:`~lightdet.models.StandardRoIHead`.
    """

    def __init__(
        self,
        stages: Sequence[CascadeStage],
        *,
        score_thr: float = 0.05,
        nms: NMS | SoftNMS | None = None,
        max_per_img: int = 100,
        min_box_size: float | None = None,
    ) -> None:
        super().__init__()
        if not stages:
            raise ValueError("CascadeRoIHead: needs at least one stage")
        classes = {s.bbox_head.num_classes for s in stages}
        if len(classes) != 1:
            raise ValueError(
                f"CascadeRoIHead: the stages' bbox heads disagree on num_classes {sorted(classes)}"
            )
        with_masks = [s.mask_head is not None for s in stages]
        if any(with_masks) and not all(with_masks):
            raise ValueError(f"CascadeRoIHead: either every stage has a mask head or none (got {with_masks})")
        self.stages = nn.ModuleList(stages)
        self.score_thr, self.max_per_img, self.min_box_size = score_thr, max_per_img, min_box_size
        self.nms = nms if nms is not None else NMS(0.5)

    @property
    def num_classes(self) -> int:
        return self.stages[0].bbox_head.num_classes

    @property
    def with_masks(self) -> bool:
        return self.stages[0].mask_head is not None

    def loss(
        self, feats: Sequence[Tensor], proposals: Sequence[Tensor], batch: DetBatch
    ) -> dict[str, Tensor]:
        """Each stage's weighted losses: ``loss_cls_s0``, ``loss_bbox_s0``, ``acc_s0``, ``loss_mask_s0``..."""
        losses: dict[str, Tensor] = {}
        boxes = list(proposals)
        for t, stage in enumerate(self.stages):
            samples = stage.sample(boxes, batch)
            rois = rois_from_boxes([s.boxes for s in samples])
            cls_logits, deltas = stage(feats, rois)
            labels = torch.cat([s.labels for s in samples])
            stage_losses = stage.bbox_head.loss(
                cls_logits, deltas, rois[:, 1:], labels, torch.cat([s.gt_boxes for s in samples])
            )
            if stage.mask_head is not None:
                stage_losses.update(stage.mask_head.loss(feats, samples, batch))
            for name, value in stage_losses.items():
                losses[f"{name}_s{t}"] = value * stage.loss_weight if name.startswith("loss") else value
            if t + 1 < len(self.stages):
                boxes = self._refine_samples(stage, samples, cls_logits.detach(), deltas.detach(), batch)
        return losses

    def _refine_samples(
        self,
        stage: CascadeStage,
        samples: list[SampledRoIs],
        cls_logits: Tensor,
        deltas: Tensor,
        batch: DetBatch,
    ) -> list[Tensor]:
        """The next stage's input boxes per image: refined sampled RoIs, ground-truth RoIs left out."""
        out = []
        counts = [len(s.boxes) for s in samples]
        for s, logits, d, meta in zip(samples, cls_logits.split(counts), deltas.split(counts), batch.metas):
            labels = s.labels.clone()
            background = labels == self.num_classes
            labels[background] = logits[background, : self.num_classes].argmax(1)
            refined = stage.refine(s.boxes, labels, d, meta.img_size)
            out.append(refined if s.is_gt is None else refined[~s.is_gt])
        return out

    @torch.no_grad()
    def predict(
        self, feats: Sequence[Tensor], proposals: Sequence[Tensor], batch: DetBatch
    ) -> list[Detections]:
        """Detections of each image in input pixels (boxes clipped to ``metas[i].img_size``)."""
        counts = [len(p) for p in proposals]
        boxes = torch.cat(list(proposals))
        logits_sum = None
        for t, stage in enumerate(self.stages):
            cls_logits, deltas = stage(feats, rois_from_boxes(list(boxes.split(counts))))
            logits_sum = cls_logits.float() if logits_sum is None else logits_sum + cls_logits.float()
            if t + 1 < len(self.stages):
                labels = cls_logits[:, : self.num_classes].argmax(1)
                boxes = torch.cat([
                    stage.refine(b, lab, d, meta.img_size)
                    for b, lab, d, meta in zip(
                        boxes.split(counts), labels.split(counts), deltas.split(counts), batch.metas
                    )
                ])
        mean_logits = logits_sum / len(self.stages)
        head = self.stages[-1].bbox_head
        detections = []
        for logits_i, deltas_i, boxes_i, meta in zip(
            mean_logits.split(counts), deltas.split(counts), boxes.split(counts), batch.metas
        ):
            per_class, scores = head.predict_boxes(logits_i, deltas_i, boxes_i, meta.img_size)
            detections.append(postprocess_detections(
                per_class, scores, score_thr=self.score_thr, nms=self.nms, max_per_img=self.max_per_img,
                min_box_size=self.min_box_size,
            ))
        return self._predict_masks(feats, detections, batch) if self.with_masks else detections

    def _predict_masks(
        self, feats: Sequence[Tensor], detections: list[Detections], batch: DetBatch
    ) -> list[Detections]:
        """Attaches the stages' mean mask probabilities, pasted at the original size, to the detections.
        Mask heads whose RoI extractors pool alike share one pooling of the detections."""
        heads: list[FCNMaskHead] = [s.mask_head for s in self.stages]  # type: ignore[misc]
        rois = rois_from_boxes([d.boxes for d in detections])
        labels = torch.cat([d.labels for d in detections])
        mean = mean_label_probs(heads, labels, lambda extractor: extractor(feats, rois))
        probs = list(mean.split([len(d) for d in detections]))
        last = heads[-1]
        return attach_masks(detections, probs, batch, last.mask_thr, last.paste_mode)

"""Builders of the mask and cascade tests: samples with instance masks, tiny Mask / Cascade (Mask) R-CNNs."""

from __future__ import annotations

import torch
from model_builders import build_tiny_detector, make_sample

from lightdet.models import (
    BBoxHead,
    CascadeRoIHead,
    CascadeStage,
    CrossEntropyLoss,
    DeltaXYWHCoder,
    FCNMaskHead,
    L1Loss,
    MaxIoUAssigner,
    MultiLevelRoIAlign,
    RandomSampler,
    TwoStageDetector,
)
from lightdet.structures import DetBatch, DetSample

STAGE_IOUS = (0.5, 0.6, 0.7)
STAGE_STDS = ((0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1), (0.033, 0.033, 0.067, 0.067))
STAGE_WEIGHTS = (1.0, 0.5, 0.25)


def box_masks(h: int, w: int, boxes: list[list[float]]) -> torch.Tensor:
    """``uint8 [N, h, w]``: an ellipse inscribed in each (integer) box."""
    ys, xs = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
    out = torch.zeros((len(boxes), h, w), dtype=torch.uint8)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
        out[i] = (((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1).to(torch.uint8)
    return out


def make_mask_sample(h: int, w: int, boxes: list[list[float]], labels: list[int], **kwargs) -> DetSample:
    sample = make_sample(h, w, boxes, labels, **kwargs)
    sample.masks = box_masks(h, w, boxes)
    return sample


def make_mask_batch() -> DetBatch:
    """The model tests' three images (objects, objects with a crowd box, none), with masks."""
    return DetBatch.collate([
        make_mask_sample(64, 80, [[4, 6, 40, 50], [30, 20, 76, 60]], [0, 2], seed=1),
        make_mask_sample(72, 64, [[10, 10, 50, 60], [0, 0, 20, 20]], [1, 0], ignore=[False, True], seed=2),
        make_mask_sample(48, 64, [], [], seed=3),
    ])


def tiny_mask_head(num_classes: int = 3, *, class_agnostic: bool = False) -> FCNMaskHead:
    return FCNMaskHead(
        MultiLevelRoIAlign(14, [4, 8, 16, 32]), num_classes, 32, num_convs=2, conv_out_channels=16,
        class_agnostic=class_agnostic,
    )


def build_tiny_mask_rcnn(num_classes: int = 3) -> TwoStageDetector:
    """The tiny Faster R-CNN of ``model_builders`` with a two-conv, 16-channel mask head."""
    model = build_tiny_detector(num_classes)
    model.roi_head.mask_head = tiny_mask_head(num_classes)
    return model


def tiny_stage(t: int, num_classes: int, with_mask: bool) -> CascadeStage:
    head = BBoxHead(
        num_classes, 32, 7, fc_out_channels=64, reg_class_agnostic=True,
        box_coder=DeltaXYWHCoder(stds=STAGE_STDS[t]), loss_cls=CrossEntropyLoss(), loss_bbox=L1Loss(),
    )
    iou = STAGE_IOUS[t]
    return CascadeStage(
        MultiLevelRoIAlign(7, [4, 8, 16, 32]), head,
        assigner=MaxIoUAssigner(iou, iou, min_pos_iou=iou, match_low_quality=False),
        sampler=RandomSampler(64, 0.25), loss_weight=STAGE_WEIGHTS[t],
        mask_head=tiny_mask_head(num_classes, class_agnostic=True) if with_mask else None,
    )


def build_tiny_cascade(num_classes: int = 3, *, with_mask: bool = True) -> TwoStageDetector:
    """The tiny detector with a three-stage cascade head (class-agnostic regression, optional masks)."""
    model = build_tiny_detector(num_classes)
    stages = [tiny_stage(t, num_classes, with_mask) for t in range(3)]
    model.roi_head = CascadeRoIHead(stages, score_thr=0.0)
    return model


__all__ = [
    "STAGE_IOUS",
    "box_masks",
    "build_tiny_cascade",
    "build_tiny_mask_rcnn",
    "make_mask_batch",
    "make_mask_sample",
]

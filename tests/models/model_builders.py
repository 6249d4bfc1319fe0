"""Builders shared by the model tests: tiny samples and a tiny Faster R-CNN (ResNet-18, 32-channel FPN)."""

from __future__ import annotations

import torch

from lightdet.models import (
    FPN,
    AnchorGenerator,
    BBoxHead,
    CrossEntropyLoss,
    DeltaXYWHCoder,
    DetPreprocessor,
    L1Loss,
    MaxIoUAssigner,
    MultiLevelRoIAlign,
    RandomSampler,
    ResNet,
    RPNHead,
    StandardRoIHead,
    TwoStageDetector,
)
from lightdet.structures import DetBatch, DetSample, ImageMeta


def make_sample(
    h: int,
    w: int,
    boxes: list[list[float]] | None = None,
    labels: list[int] | None = None,
    *,
    ignore: list[bool] | None = None,
    seed: int = 0,
    ori_size: tuple[int, int] | None = None,
    scale_factor: tuple[float, float] = (1.0, 1.0),
    flip: bool = False,
) -> DetSample:
    """A random-pixel sample of ``h x w`` with the given boxes (xyxy) and labels."""
    g = torch.Generator().manual_seed(seed)
    boxes_t = torch.tensor(boxes or [], dtype=torch.float32).reshape(-1, 4)
    return DetSample(
        image=torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8),
        boxes=boxes_t,
        labels=torch.tensor(labels or [], dtype=torch.int64),
        ignore=None if ignore is None else torch.tensor(ignore, dtype=torch.bool),
        meta=ImageMeta(seed, f"img{seed}.jpg", ori_size or (h, w), (h, w), scale_factor, flip),
    )


def make_batch() -> DetBatch:
    """Three images of different sizes: objects, objects with an ignored (crowd) box, and none."""
    return DetBatch.collate([
        make_sample(64, 80, [[4, 6, 40, 50], [30, 20, 76, 60]], [0, 2], seed=1),
        make_sample(72, 64, [[10, 10, 50, 60], [0, 0, 20, 20]], [1, 0], ignore=[False, True], seed=2),
        make_sample(48, 64, seed=3),
    ])


def build_tiny_detector(num_classes: int = 3, *, frozen_stages: int = 1, loss_bbox=None) -> TwoStageDetector:
    """ResNet-18 + 32-channel FPN Faster R-CNN sized for 48-80 px test images."""
    anchors = AnchorGenerator([4, 8, 16, 32, 64], scales=[4])
    rpn = RPNHead(
        32, 32, anchor_generator=anchors, box_coder=DeltaXYWHCoder(),
        assigner=MaxIoUAssigner(0.7, 0.3, min_pos_iou=0.3), sampler=RandomSampler(64, 0.5),
        loss_cls=CrossEntropyLoss(use_sigmoid=True), loss_bbox=L1Loss(),
        train_pre_nms_top_n=200, train_post_nms_top_n=100, test_pre_nms_top_n=150, test_post_nms_top_n=50,
    )
    bbox_head = BBoxHead(
        num_classes, 32, 7, fc_out_channels=64, box_coder=DeltaXYWHCoder(stds=(0.1, 0.1, 0.2, 0.2)),
        loss_cls=CrossEntropyLoss(), loss_bbox=loss_bbox if loss_bbox is not None else L1Loss(),
    )
    roi = StandardRoIHead(
        MultiLevelRoIAlign(7, [4, 8, 16, 32]), bbox_head,
        assigner=MaxIoUAssigner(0.5, 0.5, min_pos_iou=0.5, match_low_quality=False),
        sampler=RandomSampler(64, 0.25), score_thr=0.0,
    )
    backbone = ResNet(18, frozen_stages=frozen_stages)
    return TwoStageDetector(backbone, FPN([64, 128, 256, 512], 32, 5), rpn, roi, DetPreprocessor())

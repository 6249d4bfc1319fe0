"""Tiny RetinaNet and FCOS (ResNet-18, 32-channel FPN on strides 8-32) for 48-80 px test images."""

from __future__ import annotations

from torch import nn

from lightdet.models import (
    FPN,
    AnchorGenerator,
    CrossEntropyLoss,
    DeltaXYWHCoder,
    DetPreprocessor,
    FCOSAssigner,
    FCOSHead,
    FocalLoss,
    GIoULoss,
    L1Loss,
    MaxIoUAssigner,
    PointGenerator,
    ResNet,
    RetinaHead,
    SingleStageDetector,
)


def _detector(head: nn.Module, frozen_stages: int) -> SingleStageDetector:
    neck = FPN([64, 128, 256, 512], 32, 3, start_level=1)
    return SingleStageDetector(ResNet(18, frozen_stages=frozen_stages), neck, head, DetPreprocessor())


def build_tiny_retinanet(
    num_classes: int = 3, *, frozen_stages: int = 1, loss_cls: nn.Module | None = None
) -> SingleStageDetector:
    head = RetinaHead(
        num_classes, 32, 32, stacked_convs=2,
        anchor_generator=AnchorGenerator([8, 16, 32], scales=None, octave_base_scale=2, scales_per_octave=3),
        box_coder=DeltaXYWHCoder(), assigner=MaxIoUAssigner(0.5, 0.4, min_pos_iou=0.0),
        loss_cls=loss_cls if loss_cls is not None else FocalLoss(), loss_bbox=L1Loss(), score_thr=0.0,
    )
    return _detector(head, frozen_stages)


def build_tiny_fcos(
    num_classes: int = 3, *, frozen_stages: int = 1, tricks: bool = True
) -> SingleStageDetector:
    """``tricks``: normalised distances, centre-ness on the box tower, centre sampling (else plain FCOS)."""
    head = FCOSHead(
        num_classes, 32, 32, stacked_convs=2, norm="GN",
        point_generator=PointGenerator([8, 16, 32]),
        assigner=FCOSAssigner([(-1, 32), (32, 64), (64, 1e8)], center_sampling=tricks),
        loss_cls=FocalLoss(), loss_bbox=GIoULoss(), loss_centerness=CrossEntropyLoss(use_sigmoid=True),
        norm_on_bbox=tricks, centerness_on_reg=tricks, score_thr=0.0,
    )
    return _detector(head, frozen_stages)

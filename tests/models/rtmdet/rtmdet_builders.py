"""A tiny RTMDet of the real parts (CSPNeXt at 1/8 width, 16-channel PAFPN and head) for 48-80 px images."""

from __future__ import annotations

from lightdet.models import (
    CSPNeXt,
    CSPNeXtPAFPN,
    DetPreprocessor,
    DynamicSoftLabelAssigner,
    GIoULoss,
    PointGenerator,
    QualityFocalLoss,
    RTMDetHead,
    SingleStageDetector,
)


def build_tiny_rtmdet(num_classes: int = 3, *, exp_on_reg: bool = False, max_per_img: int = 20) -> SingleStageDetector:
    """CSPNeXt (widen 0.125, one block per stage) -> CSPNeXtPAFPN(16) -> RTMDetHead(16), strides 8-32."""
    backbone = CSPNeXt(deepen_factor=0.167, widen_factor=0.125)
    neck = CSPNeXtPAFPN(backbone.out_channels, 16, num_csp_blocks=1, in_strides=backbone.strides)
    head = RTMDetHead(
        num_classes, 16, 16, exp_on_reg=exp_on_reg, point_generator=PointGenerator(neck.strides, offset=0.0),
        assigner=DynamicSoftLabelAssigner(13), loss_cls=QualityFocalLoss(2.0), loss_bbox=GIoULoss(loss_weight=2.0),
        nms_pre=100, max_per_img=max_per_img,
    )  # fmt: skip
    return SingleStageDetector(backbone, neck, head, DetPreprocessor())

"""Detection models composed from backbones, necks, heads, operators and losses.

Everything a config's ``_target_`` names is importable from here, e.g. ``lightdet.models.TwoStageDetector``.
"""

from lightdet.models.backbones import ResNet, resnet_out_channels
from lightdet.models.dense_heads import Proposals, RPNHead
from lightdet.models.detectors import Detector, TwoStageDetector, to_original
from lightdet.models.layers import ConvModule, build_norm
from lightdet.models.losses import BoundedIoULoss, CrossEntropyLoss, GIoULoss, L1Loss, SmoothL1Loss
from lightdet.models.necks import FPN
from lightdet.models.ops import (
    NMS,
    AnchorGenerator,
    DeltaXYWHCoder,
    MaxIoUAssigner,
    MultiLevelRoIAlign,
    RandomSampler,
    SoftNMS,
)
from lightdet.models.preprocessor import DetPreprocessor
from lightdet.models.roi_heads import BBoxHead, RoIBranch, SampledRoIs, StandardRoIHead

__all__ = [
    "AnchorGenerator",
    "BBoxHead",
    "BoundedIoULoss",
    "ConvModule",
    "CrossEntropyLoss",
    "DeltaXYWHCoder",
    "DetPreprocessor",
    "Detector",
    "FPN",
    "GIoULoss",
    "L1Loss",
    "MaxIoUAssigner",
    "MultiLevelRoIAlign",
    "NMS",
    "Proposals",
    "RPNHead",
    "RandomSampler",
    "ResNet",
    "RoIBranch",
    "SampledRoIs",
    "SmoothL1Loss",
    "SoftNMS",
    "StandardRoIHead",
    "TwoStageDetector",
    "build_norm",
    "resnet_out_channels",
    "to_original",
]

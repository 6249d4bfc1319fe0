"""Detection models composed from backbones, necks, heads, operators and losses.

Everything a config's ``_target_`` names is importable from here, e.g. ``lightdet.models.TwoStageDetector``.
"""

from lightdet.models.backbones import (
    CSPNeXt,
    HGNetv2,
    MobileNetV3,
    PResNet,
    ResNet,
    TimmBackbone,
    TorchvisionBackbone,
    resnet_out_channels,
)
from lightdet.models.dense_heads import FCOSHead, Proposals, RetinaHead, RPNHead, RTMDetHead
from lightdet.models.detectors import Detector, SingleStageDetector, TwoStageDetector, to_original
from lightdet.models.detr import RTDETR
from lightdet.models.folding import fold_batchnorm, optimize_for_inference
from lightdet.models.layers import ConvModule, build_norm
from lightdet.models.losses import (
    BoundedIoULoss,
    CrossEntropyLoss,
    FocalLoss,
    GHMCLoss,
    GIoULoss,
    IoULoss,
    L1Loss,
    QualityFocalLoss,
    SmoothL1Loss,
)
from lightdet.models.necks import FPN, PAFPN, CSPNeXtPAFPN, SimpleFPN
from lightdet.models.ops import (
    NMS,
    AnchorGenerator,
    DeltaXYWHCoder,
    DynamicSoftLabelAssigner,
    MaxIoUAssigner,
    MultiLevelRoIAlign,
    RandomSampler,
    SoftNMS,
)
from lightdet.models.ops.fcos_assigner import FCOSAssigner
from lightdet.models.ops.points import PointGenerator
from lightdet.models.preprocessor import DetPreprocessor
from lightdet.models.roi_heads import (
    BBoxHead,
    CascadeRoIHead,
    CascadeStage,
    FCNMaskHead,
    RoIBranch,
    SampledRoIs,
    StandardRoIHead,
)

__all__ = [
    "AnchorGenerator",
    "BBoxHead",
    "BoundedIoULoss",
    "CascadeRoIHead",
    "CascadeStage",
    "CSPNeXt",
    "CSPNeXtPAFPN",
    "ConvModule",
    "CrossEntropyLoss",
    "DeltaXYWHCoder",
    "DetPreprocessor",
    "DynamicSoftLabelAssigner",
    "FCOSAssigner",
    "FCOSHead",
    "FocalLoss",
    "fold_batchnorm",
    "optimize_for_inference",
    "GHMCLoss",
    "IoULoss",
    "PAFPN",
    "PResNet",
    "PointGenerator",
    "QualityFocalLoss",
    "RTMDetHead",
    "RTDETR",
    "RetinaHead",
    "SingleStageDetector",
    "Detector",
    "FCNMaskHead",
    "FPN",
    "GIoULoss",
    "HGNetv2",
    "L1Loss",
    "MaxIoUAssigner",
    "MobileNetV3",
    "MultiLevelRoIAlign",
    "NMS",
    "Proposals",
    "RPNHead",
    "RandomSampler",
    "ResNet",
    "RoIBranch",
    "SampledRoIs",
    "SmoothL1Loss",
    "SimpleFPN",
    "SoftNMS",
    "StandardRoIHead",
    "TimmBackbone",
    "TorchvisionBackbone",
    "TwoStageDetector",
    "build_norm",
    "resnet_out_channels",
    "to_original",
]

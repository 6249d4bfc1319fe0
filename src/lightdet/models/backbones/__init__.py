"""Backbones: image -> list of feature maps, each declaring ``out_channels`` and ``strides``."""

from lightdet.models.backbones.cspnext import CSPNeXt
from lightdet.models.backbones.hgnetv2 import HGNetv2
from lightdet.models.backbones.mobilenet import MobileNetV3
from lightdet.models.backbones.presnet import PResNet
from lightdet.models.backbones.resnet import ResNet, resnet_out_channels
from lightdet.models.backbones.timm_backbone import TimmBackbone
from lightdet.models.backbones.torchvision_backbone import TorchvisionBackbone

__all__ = [
    "CSPNeXt",
    "HGNetv2",
    "MobileNetV3",
    "PResNet",
    "ResNet",
    "TimmBackbone",
    "TorchvisionBackbone",
    "resnet_out_channels",
]

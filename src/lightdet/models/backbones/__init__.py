"""Backbones: image -> list of feature maps, each declaring ``out_channels`` and ``strides``."""

from lightdet.models.backbones.mobilenet import MobileNetV3
from lightdet.models.backbones.resnet import ResNet, resnet_out_channels

__all__ = ["MobileNetV3", "ResNet", "resnet_out_channels"]

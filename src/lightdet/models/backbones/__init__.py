"""Backbones: image -> list of feature maps, each declaring ``out_channels`` and ``strides``."""

from lightdet.models.backbones.hgnetv2 import HGNetv2
from lightdet.models.backbones.mobilenet import MobileNetV3
from lightdet.models.backbones.presnet import PResNet
from lightdet.models.backbones.resnet import ResNet, resnet_out_channels

__all__ = ["HGNetv2", "MobileNetV3", "PResNet", "ResNet", "resnet_out_channels"]

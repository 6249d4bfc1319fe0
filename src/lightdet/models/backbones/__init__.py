"""Backbones: image -> list of feature maps."""

from lightdet.models.backbones.resnet import ResNet, resnet_out_channels

__all__ = ["ResNet", "resnet_out_channels"]

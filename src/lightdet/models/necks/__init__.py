"""Necks: backbone feature maps -> feature pyramid."""

from lightdet.models.necks.fpn import FPN

__all__ = ["FPN"]

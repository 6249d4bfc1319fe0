"""Necks: backbone feature maps -> feature pyramid."""

from lightdet.models.necks.cspnext_pafpn import CSPNeXtPAFPN
from lightdet.models.necks.fpn import FPN
from lightdet.models.necks.pafpn import PAFPN
from lightdet.models.necks.simple_fpn import SimpleFPN

__all__ = ["CSPNeXtPAFPN", "FPN", "PAFPN", "SimpleFPN"]

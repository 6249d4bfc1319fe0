"""Dense heads: predictions at every position of a feature pyramid."""

from lightdet.models.dense_heads.dense_utils import Scale
from lightdet.models.dense_heads.fcos_head import FCOSHead, FCOSOutputs
from lightdet.models.dense_heads.retina_head import RetinaHead
from lightdet.models.dense_heads.rpn_head import Proposals, RPNHead
from lightdet.models.dense_heads.rtmdet_head import RTMDetHead, RTMDetOutputs

__all__ = [
    "FCOSHead",
    "FCOSOutputs",
    "Proposals",
    "RPNHead",
    "RTMDetHead",
    "RTMDetOutputs",
    "RetinaHead",
    "Scale",
]

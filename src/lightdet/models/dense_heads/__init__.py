"""Dense heads: predictions at every position of a feature pyramid."""

from lightdet.models.dense_heads.rpn_head import Proposals, RPNHead

__all__ = ["Proposals", "RPNHead"]

"""The real-time DETRs (RT-DETR, RT-DETRv2, D-FINE): hybrid encoder, deformable decoder, matcher, losses."""

from lightdet.models.detr.blocks import MLP, ConvNormAct, CSPRepLayer, RepNCSPELAN4, RepVggBlock, SCDown
from lightdet.models.detr.criterion import DETRCriterion
from lightdet.models.detr.decoder import DecoderOutput, DETRDecoder
from lightdet.models.detr.deformable_attention import MSDeformableAttention, deformable_attention_core
from lightdet.models.detr.denoising import DenoisingQueries, contrastive_denoising
from lightdet.models.detr.detector import RTDETR
from lightdet.models.detr.fdr import FDR, LQE
from lightdet.models.detr.hybrid_encoder import HybridEncoder
from lightdet.models.detr.matcher import HungarianMatcher

__all__ = [
    "CSPRepLayer",
    "ConvNormAct",
    "DETRCriterion",
    "DETRDecoder",
    "DecoderOutput",
    "DenoisingQueries",
    "FDR",
    "HungarianMatcher",
    "HybridEncoder",
    "LQE",
    "MLP",
    "MSDeformableAttention",
    "RTDETR",
    "RepNCSPELAN4",
    "RepVggBlock",
    "SCDown",
    "contrastive_denoising",
    "deformable_attention_core",
]

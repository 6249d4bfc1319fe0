"""Single-purpose detection operators: anchors, box coding, assignment, sampling, NMS and RoI pooling."""

from lightdet.models.ops.anchors import AnchorGenerator
from lightdet.models.ops.assigner import IGNORED, NEGATIVE, AssignResult, MaxIoUAssigner
from lightdet.models.ops.box_coder import DeltaXYWHCoder
from lightdet.models.ops.boxes import box_iof, large_box_mask
from lightdet.models.ops.dynamic_soft_label_assigner import DynamicSoftLabelAssigner
from lightdet.models.ops.nms import NMS, SoftNMS
from lightdet.models.ops.roi_extractor import MultiLevelRoIAlign
from lightdet.models.ops.sampler import RandomSampler

__all__ = [
    "AnchorGenerator",
    "AssignResult",
    "DeltaXYWHCoder",
    "DynamicSoftLabelAssigner",
    "IGNORED",
    "MaxIoUAssigner",
    "MultiLevelRoIAlign",
    "NEGATIVE",
    "NMS",
    "RandomSampler",
    "SoftNMS",
    "box_iof",
    "large_box_mask",
]

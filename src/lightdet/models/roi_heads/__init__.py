"""Second-stage heads on pooled RoI features."""

from lightdet.models.roi_heads.bbox_head import BBoxHead
from lightdet.models.roi_heads.cascade_roi_head import CascadeRoIHead, CascadeStage
from lightdet.models.roi_heads.mask_head import FCNMaskHead, attach_masks
from lightdet.models.roi_heads.sampling import RoIBranch, SampledRoIs, rois_from_boxes, sample_rois
from lightdet.models.roi_heads.standard_roi_head import StandardRoIHead, postprocess_detections

__all__ = [
    "BBoxHead",
    "CascadeRoIHead",
    "CascadeStage",
    "FCNMaskHead",
    "RoIBranch",
    "SampledRoIs",
    "StandardRoIHead",
    "attach_masks",
    "postprocess_detections",
    "rois_from_boxes",
    "sample_rois",
]

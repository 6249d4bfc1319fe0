"""Second-stage heads on pooled RoI features."""

from lightdet.models.roi_heads.bbox_head import BBoxHead
from lightdet.models.roi_heads.sampling import RoIBranch, SampledRoIs, rois_from_boxes
from lightdet.models.roi_heads.standard_roi_head import StandardRoIHead

__all__ = ["BBoxHead", "RoIBranch", "SampledRoIs", "StandardRoIHead", "rois_from_boxes"]

"""MMDetection ``faster_rcnn_r50_fpn_1x_coco`` weights -> lightdet (the names already agree).

lightdet's modules use MMDetection's parameter names, so the conversion is a checked identity: every key must
belong to a known part of the architecture, anything else is reported as unexpected. MMDetection's heads
already put background last (``fc_cls`` has 81 rows, the last is background) and have 80 classes ordered by
COCO category id.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from lightdet.checkpoint.report import ConversionReport
from lightdet.checkpoint.rules import Rule, rename_keys

FASTER_RCNN_RULES: list[Rule] = [
    (r"(backbone\.(?:conv1|bn1|layer[1-4])\..+)", r"\1"),
    (r"(neck\.(?:lateral_convs|fpn_convs)\.\d+\.conv\.(?:weight|bias))", r"\1"),
    (r"(rpn_head\.(?:rpn_conv|rpn_cls|rpn_reg)\.(?:weight|bias))", r"\1"),
    (r"(roi_head\.bbox_head\.(?:shared_fcs\.\d+|fc_cls|fc_reg)\.(?:weight|bias))", r"\1"),
]


def convert_faster_rcnn(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], ConversionReport]:
    """Checks and passes through an MMDetection Faster R-CNN R50-FPN ``state_dict`` (``meta`` removed)."""
    return rename_keys(state, FASTER_RCNN_RULES)

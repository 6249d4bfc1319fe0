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


# --- RetinaNet and FCOS: the single-stage head is ``bbox_head`` in both libraries ------------------------

_P3P7_RULES: list[Rule] = [
    FASTER_RCNN_RULES[0],
    (r"(neck\.(?:lateral_convs|fpn_convs)\.\d+\.conv\.(?:weight|bias))", r"\1"),
]

RETINANET_RULES: list[Rule] = [
    *_P3P7_RULES,
    (r"(bbox_head\.(?:cls_convs|reg_convs)\.\d+\.conv\.(?:weight|bias))", r"\1"),
    (r"(bbox_head\.(?:retina_cls|retina_reg)\.(?:weight|bias))", r"\1"),
]

FCOS_RULES: list[Rule] = [
    *_P3P7_RULES,
    (r"(bbox_head\.(?:cls_convs|reg_convs)\.\d+\.(?:conv|gn)\.(?:weight|bias))", r"\1"),
    (r"(bbox_head\.(?:conv_cls|conv_reg|conv_centerness)\.(?:weight|bias))", r"\1"),
    (r"(bbox_head\.scales\.\d+\.scale)", r"\1"),
]


def convert_retinanet(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], ConversionReport]:
    """Checks and passes through an MMDetection ``retinanet_r50_fpn_1x_coco`` ``state_dict`` (80 classes)."""
    return rename_keys(state, RETINANET_RULES)


def convert_fcos(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], ConversionReport]:
    """Checks and passes through an MMDetection ``fcos_r50_caffe_fpn_gn-head_1x_coco`` ``state_dict``.

    Its towers are ConvModules with GroupNorm and no conv bias (``cls_convs.{i}.conv.weight``,
    ``cls_convs.{i}.gn.*``); the per-level ``scales.{i}.scale`` are scalars.
    """
    return rename_keys(state, FCOS_RULES)


# --- Mask R-CNN and Cascade (Mask) R-CNN -------------------------------------------------------------------

MASK_HEAD_PATTERN = r"mask_head\.(?:convs\.\d+\.conv|upsample|conv_logits)\.(?:weight|bias)"

MASK_RCNN_RULES: list[Rule] = [
    *FASTER_RCNN_RULES,
    (r"(roi_head\." + MASK_HEAD_PATTERN + ")", r"\1"),
]

# MMDetection keeps the stages in per-part lists (roi_head.bbox_head.{t}, roi_head.mask_head.{t}); lightdet
# keeps one module per stage (roi_head.stages.{t}.bbox_head, roi_head.stages.{t}.mask_head).
CASCADE_RCNN_RULES: list[Rule] = [
    *FASTER_RCNN_RULES[:3],
    (
        r"roi_head\.bbox_head\.(\d+)\.((?:shared_fcs\.\d+|fc_cls|fc_reg)\.(?:weight|bias))",
        r"roi_head.stages.\1.bbox_head.\2",
    ),
    (
        r"roi_head\.mask_head\.(\d+)\.((?:convs\.\d+\.conv|upsample|conv_logits)\.(?:weight|bias))",
        r"roi_head.stages.\1.mask_head.\2",
    ),
]


def convert_mask_rcnn(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], ConversionReport]:
    """Checks and passes through an MMDetection ``mask_rcnn_r50_fpn_1x_coco`` ``state_dict`` (80 classes)."""
    return rename_keys(state, MASK_RCNN_RULES)


def convert_cascade_rcnn(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], ConversionReport]:
    """Renames an MMDetection ``cascade_rcnn_r50_fpn_1x_coco`` or ``cascade_mask_rcnn_r50_fpn_1x_coco``
    ``state_dict``: per-stage list entries become per-stage modules."""
    return rename_keys(state, CASCADE_RCNN_RULES)

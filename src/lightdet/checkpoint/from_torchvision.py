"""torchvision ``fasterrcnn_resnet50_fpn`` weights -> lightdet's Faster R-CNN (MMDetection names).

torchvision's COCO box predictor has 91 outputs: index 0 is background and index ``c`` is COCO category id
``c`` (1..90), including 10 "N/A" ids that COCO never used. lightdet puts background last and has no slot for
it in the regression layer, so rows are reordered and the background's 4 regression rows are dropped.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from lightdet.checkpoint.report import ConversionReport
from lightdet.checkpoint.rules import Rule, rename_keys

# COCO category ids that torchvision's 91-way head reserves but COCO does not use ("N/A").
COCO_UNUSED_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)
# The 80 real COCO category ids in increasing order: label j of an 80-class model is COCO_IDS[j].
COCO_IDS = tuple(i for i in range(1, 91) if i not in COCO_UNUSED_IDS)

_FC_CLS = "roi_head.bbox_head.fc_cls"
_FC_REG = "roi_head.bbox_head.fc_reg"

FASTER_RCNN_RULES: list[Rule] = [
    (r"backbone\.body\.(.+)", r"backbone.\1"),
    # FPN and RPN convs: torchvision >= 0.13 wraps them in Conv2dNormActivation (".0"); older files do not.
    (r"backbone\.fpn\.inner_blocks\.(\d+)(?:\.0)?\.(weight|bias)", r"neck.lateral_convs.\1.conv.\2"),
    (r"backbone\.fpn\.layer_blocks\.(\d+)(?:\.0)?\.(weight|bias)", r"neck.fpn_convs.\1.conv.\2"),
    (r"rpn\.head\.conv(?:\.0\.0)?\.(weight|bias)", r"rpn_head.rpn_conv.\1"),
    (r"rpn\.head\.cls_logits\.(weight|bias)", r"rpn_head.rpn_cls.\1"),
    (r"rpn\.head\.bbox_pred\.(weight|bias)", r"rpn_head.rpn_reg.\1"),
    (r"roi_heads\.box_head\.fc6\.(weight|bias)", r"roi_head.bbox_head.shared_fcs.0.\1"),
    (r"roi_heads\.box_head\.fc7\.(weight|bias)", r"roi_head.bbox_head.shared_fcs.1.\1"),
    (r"roi_heads\.box_predictor\.cls_score\.(weight|bias)", _FC_CLS + r".\1"),
    (r"roi_heads\.box_predictor\.bbox_pred\.(weight|bias)", _FC_REG + r".\1"),
]


def convert_faster_rcnn(
    state: Mapping[str, Tensor], *, coco80: bool = False
) -> tuple[dict[str, Tensor], ConversionReport]:
    """Renames a torchvision Faster R-CNN state dict and moves the predictor to lightdet's class layout.

    Args:
        state: ``FasterRCNN.state_dict()`` (FrozenBN buffers or BatchNorm with step counters both work).
        coco80: keep only the 80 real COCO categories (labels ordered by category id, see ``COCO_IDS``)
            instead of all 90 foreground outputs (labels = COCO category id - 1, "N/A" slots included).
            The 90-way model reproduces torchvision's numbers exactly. Dropping the N/A logits removes their
            share of the softmax's normaliser, so the remaining class scores rise by that share (trained N/A
            logits are small, so the change is small, but it is not exact).

    Returns:
        the converted state dict and a :class:`ConversionReport` of the renaming.
    """
    out, report = rename_keys(state, FASTER_RCNN_RULES)
    cls_weight = out.get(_FC_CLS + ".weight")
    num_outputs = cls_weight.shape[0] if cls_weight is not None else 1 + len(COCO_IDS) + len(COCO_UNUSED_IDS)
    keep = torch.tensor(COCO_IDS if coco80 else list(range(1, num_outputs)))
    for name in ("weight", "bias"):
        if f"{_FC_CLS}.{name}" in out:
            out[f"{_FC_CLS}.{name}"] = background_last(out[f"{_FC_CLS}.{name}"], keep)
        if f"{_FC_REG}.{name}" in out:
            out[f"{_FC_REG}.{name}"] = select_class_rows(out[f"{_FC_REG}.{name}"], keep)
    return out, report


def background_last(cls_param: Tensor, keep: Tensor) -> Tensor:
    """``[1 + C, ...]`` with background at row 0 -> ``[len(keep) + 1, ...]``: rows ``keep``, background."""
    return torch.cat([cls_param[keep], cls_param[:1]])


def select_class_rows(reg_param: Tensor, keep: Tensor) -> Tensor:
    """``[4 * (1 + C), ...]`` per-class regression rows -> the 4 rows of each class in ``keep``, in order."""
    rows = (keep[:, None] * 4 + torch.arange(4)).reshape(-1)
    return reg_param[rows]

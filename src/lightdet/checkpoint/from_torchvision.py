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


# --- RetinaNet and FCOS (torchvision retinanet_resnet50_fpn, fcos_resnet50_fpn) ---------------------------
# Both use P3-P7 with LastLevelP6P7 on P5 (lightdet: FPN add_extra_convs="on_output", relu before P7) and
# sigmoid heads whose 91 class outputs per anchor include an unused background slot 0.

_P3P7_NECK_RULES: list[Rule] = [
    *FASTER_RCNN_RULES[:3],
    (r"backbone\.fpn\.extra_blocks\.p6\.(weight|bias)", r"neck.fpn_convs.3.conv.\1"),
    (r"backbone\.fpn\.extra_blocks\.p7\.(weight|bias)", r"neck.fpn_convs.4.conv.\1"),
]
_TOWERS = (("classification", "cls_convs"), ("regression", "reg_convs"))

RETINANET_RULES: list[Rule] = [
    *_P3P7_NECK_RULES,
    # torchvision >= 0.13 wraps each tower conv in Conv2dNormActivation (conv.{i}.0); older files (such as
    # the published COCO weights) interleave conv and ReLU in one Sequential (conv.{2i}).
    *[
        (rf"head\.{src}_head\.conv\.(\d+)\.0\.(weight|bias)", rf"bbox_head.{dst}.\1.conv.\2")
        for src, dst in _TOWERS
    ],
    *[
        (rf"head\.{src}_head\.conv\.{2 * i}\.(weight|bias)", rf"bbox_head.{dst}.{i}.conv.\1")
        for src, dst in _TOWERS for i in range(4)
    ],
    (r"head\.classification_head\.cls_logits\.(weight|bias)", r"bbox_head.retina_cls.\1"),
    (r"head\.regression_head\.bbox_reg\.(weight|bias)", r"bbox_head.retina_reg.\1"),
]

FCOS_RULES: list[Rule] = [
    *_P3P7_NECK_RULES,
    # Each tower is one Sequential of (Conv2d, GroupNorm, ReLU) x 4: conv at 3i, GroupNorm at 3i + 1.
    *[
        rule
        for src, dst in _TOWERS
        for i in range(4)
        for rule in (
            (rf"head\.{src}_head\.conv\.{3 * i}\.(weight|bias)", rf"bbox_head.{dst}.{i}.conv.\1"),
            (rf"head\.{src}_head\.conv\.{3 * i + 1}\.(weight|bias)", rf"bbox_head.{dst}.{i}.gn.\1"),
        )
    ],
    (r"head\.classification_head\.cls_logits\.(weight|bias)", r"bbox_head.conv_cls.\1"),
    (r"head\.regression_head\.bbox_reg\.(weight|bias)", r"bbox_head.conv_reg.\1"),
    (r"head\.regression_head\.bbox_ctrness\.(weight|bias)", r"bbox_head.conv_centerness.\1"),
]


def select_sigmoid_classes(cls_param: Tensor, keep: Tensor, num_anchors: int) -> Tensor:
    """``[A * C, ...]`` (channel ``a * C + c``) -> ``[A * len(keep), ...]``: classes ``keep``, per anchor."""
    per_anchor = cls_param.view(num_anchors, -1, *cls_param.shape[1:])
    return per_anchor[:, keep].reshape(num_anchors * len(keep), *cls_param.shape[1:])


def _convert_sigmoid_detector(
    state: Mapping[str, Tensor], rules: list[Rule], cls_key: str, num_anchors: int, coco80: bool
) -> tuple[dict[str, Tensor], ConversionReport]:
    """Renames by ``rules`` and keeps the foreground classes of the sigmoid classifier ``cls_key``."""
    out, report = rename_keys(state, rules)
    weight = out.get(cls_key + ".weight")
    num_outputs = 1 + len(COCO_IDS) + len(COCO_UNUSED_IDS)
    if weight is not None:
        num_outputs = weight.shape[0] // num_anchors
    keep = torch.tensor(COCO_IDS if coco80 else list(range(1, num_outputs)))
    for name in ("weight", "bias"):
        if f"{cls_key}.{name}" in out:
            out[f"{cls_key}.{name}"] = select_sigmoid_classes(out[f"{cls_key}.{name}"], keep, num_anchors)
    return out, report


def convert_retinanet(
    state: Mapping[str, Tensor], *, coco80: bool = False
) -> tuple[dict[str, Tensor], ConversionReport]:
    """torchvision ``retinanet_resnet50_fpn`` -> lightdet's RetinaNet (``bbox_head.retina_cls`` etc.).

    torchvision's classifier has 91 sigmoid outputs per anchor (9 anchors); slot 0 (background) is never a
    training positive and is dropped, leaving labels = COCO id - 1 (90 classes, "N/A" included), or the 80
    real categories with ``coco80``. Sigmoid classes are independent, so both choices are exact.
    """
    reg = state.get("head.regression_head.bbox_reg.weight")
    num_anchors = reg.shape[0] // 4 if reg is not None else 9
    return _convert_sigmoid_detector(state, RETINANET_RULES, "bbox_head.retina_cls", num_anchors, coco80)


def convert_fcos(
    state: Mapping[str, Tensor], *, coco80: bool = False
) -> tuple[dict[str, Tensor], ConversionReport]:
    """torchvision ``fcos_resnet50_fpn`` -> lightdet's FCOS (GroupNorm towers with conv biases, no scales).

    The class outputs are reduced as in :func:`convert_retinanet` (one point per position).
    """
    return _convert_sigmoid_detector(state, FCOS_RULES, "bbox_head.conv_cls", 1, coco80)


# --- Mask R-CNN ---------------------------------------------------------------------------------------------

_MASK_LOGITS = "roi_head.mask_head.conv_logits"

MASK_RCNN_RULES: list[Rule] = [
    *FASTER_RCNN_RULES,
    # torchvision >= 0.13 wraps the mask FCN convs in Conv2dNormActivation (mask_head.{i}.0)
    (r"roi_heads\.mask_head\.(\d+)\.0\.(weight|bias)", r"roi_head.mask_head.convs.\1.conv.\2"),
    *[
        (rf"roi_heads\.mask_head\.mask_fcn{i + 1}\.(weight|bias)", rf"roi_head.mask_head.convs.{i}.conv.\1")
        for i in range(4)
    ],
    (r"roi_heads\.mask_predictor\.conv5_mask\.(weight|bias)", r"roi_head.mask_head.upsample.\1"),
    (r"roi_heads\.mask_predictor\.mask_fcn_logits\.(weight|bias)", _MASK_LOGITS + r".\1"),
]


def convert_mask_rcnn(
    state: Mapping[str, Tensor], *, coco80: bool = False
) -> tuple[dict[str, Tensor], ConversionReport]:
    """Renames a torchvision ``maskrcnn_resnet50_fpn`` state dict; classes as :func:`convert_faster_rcnn`.

    The mask logits have one channel per torchvision class, background (channel 0) included: the background
    channel is dropped and the others kept in the box classifier's order (90 ids, or the 80 real classes).
    """
    out, report = rename_keys(state, MASK_RCNN_RULES)
    cls_weight = out.get(_FC_CLS + ".weight")
    num_outputs = cls_weight.shape[0] if cls_weight is not None else 1 + len(COCO_IDS) + len(COCO_UNUSED_IDS)
    keep = torch.tensor(COCO_IDS if coco80 else list(range(1, num_outputs)))
    reorder = {_FC_CLS: lambda t: background_last(t, keep), _FC_REG: lambda t: select_class_rows(t, keep),
               _MASK_LOGITS: lambda t: t[keep]}
    for prefix, fn in reorder.items():
        for name in ("weight", "bias"):
            if f"{prefix}.{name}" in out:
                out[f"{prefix}.{name}"] = fn(out[f"{prefix}.{name}"])
    return out, report

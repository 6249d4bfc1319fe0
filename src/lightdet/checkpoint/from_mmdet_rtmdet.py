"""MMDetection RTMDet (``rtmdet_{tiny,s,m,l,x}_8xb32-300e_coco``) weights -> lightdet: a checked identity.

lightdet's CSPNeXt, CSPNeXtPAFPN and RTMDetHead use MMDetection's module names, so every key passes through
unchanged; a key outside these patterns is reported as unexpected. The head's convs are shared over levels
in both libraries and each level's copy is stored (``bbox_head.cls_convs.{level}.{i}.conv.weight`` for
every level, the same tensor); the per-level BN layers (``...{level}.{i}.bn.*``) are distinct.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from lightdet.checkpoint.report import ConversionReport
from lightdet.checkpoint.rules import Rule, rename_keys

_BN = r"bn\.(?:weight|bias|running_mean|running_var|num_batches_tracked)"
# a conv unit (ConvModule with BN): its conv has no bias
_UNIT = rf"(?:conv\.weight|{_BN})"
# a CSP layer: three 1x1 units, blocks of a 3x3 unit and a depthwise-separable unit, channel attention
_CSP = (
    rf"(?:(?:main_conv|short_conv|final_conv)\.{_UNIT}"
    rf"|blocks\.\d+\.(?:conv1|conv2\.depthwise_conv|conv2\.pointwise_conv)\.{_UNIT}"
    r"|attention\.fc\.(?:weight|bias))"
)

RTMDET_RULES: list[Rule] = [
    (rf"(backbone\.stem\.[0-2]\.{_UNIT})", r"\1"),
    # stageN.0: the stride-2 unit; stage4.1: SPP (conv1, conv2); the last entry: the CSP layer
    (rf"(backbone\.stage[1-4]\.0\.{_UNIT})", r"\1"),
    (rf"(backbone\.stage4\.1\.conv[12]\.{_UNIT})", r"\1"),
    (rf"(backbone\.stage[1-4]\.[12]\.{_CSP})", r"\1"),
    (rf"(neck\.(?:reduce_layers|downsamples|out_convs)\.\d+\.{_UNIT})", r"\1"),
    (rf"(neck\.(?:top_down_blocks|bottom_up_blocks)\.\d+\.{_CSP})", r"\1"),
    (rf"(bbox_head\.(?:cls_convs|reg_convs)\.\d+\.\d+\.{_UNIT})", r"\1"),
    (r"(bbox_head\.(?:rtm_cls|rtm_reg)\.\d+\.(?:weight|bias))", r"\1"),
]


def convert_rtmdet(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], ConversionReport]:
    """Checks and passes through an MMDetection RTMDet detection ``state_dict`` (80 classes, ``meta`` removed)."""
    return rename_keys(state, RTMDET_RULES)

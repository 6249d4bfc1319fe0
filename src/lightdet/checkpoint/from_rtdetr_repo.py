"""The original repositories' ``.pth`` files -> lightdet: lyuwenyu/RT-DETR (``rtdetr_pytorch``,
``rtdetrv2_pytorch``) and Peterande/D-FINE, including their EMA weights.

lightdet's DETR modules keep those repositories' names (``backbone.res_layers...``, ``backbone.stages...``,
``encoder.*``, ``decoder.dec_score_head``), so most keys pass through; the decoder layers lose one
``decoder.`` level, the query-selection heads move under ``decoder.query_selection`` and D-FINE's pre-head
and LQE heads under ``decoder.fdr``. Training checkpoints hold ``{"model": ..., "ema": {"module": ...}}``;
the EMA weights (what the repositories evaluate and publish) are preferred.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor

from lightdet.checkpoint.report import ConversionReport
from lightdet.checkpoint.rules import Rule, rename_keys

_BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"

RULES: list[Rule] = [
    # v1 names the projections' conv/norm 0/1; v2 and D-FINE name them conv/norm
    (r"(encoder|decoder)\.input_proj\.(\d+)\.(?:0|conv)\.weight", r"\1.input_proj.\2.conv.weight"),
    (rf"(encoder|decoder)\.input_proj\.(\d+)\.(?:1|norm)\.{_BN}", r"\1.input_proj.\2.norm.\3"),
    (r"(backbone\..+)", r"\1"),
    # D-FINE wraps each SCDown in a Sequential
    (r"encoder\.downsample_convs\.(\d+)\.0\.(cv[12]\..+)", r"encoder.downsample_convs.\1.\2"),
    (r"(encoder\.(?:encoder|lateral_convs|fpn_blocks|downsample_convs|pan_blocks)\..+)", r"\1"),
    (r"decoder\.decoder\.layers\.(.+)", r"decoder.layers.\1"),
    (r"decoder\.decoder\.lqe_layers\.(.+)", r"decoder.fdr.lqe_layers.\1"),
    (r"decoder\.pre_bbox_head\.(.+)", r"decoder.fdr.pre_bbox_head.\1"),
    (r"decoder\.enc_output\.(?:0|proj)\.(weight|bias)", r"decoder.query_selection.enc_output.proj.\1"),
    (r"decoder\.enc_output\.(?:1|norm)\.(weight|bias)", r"decoder.query_selection.enc_output.norm.\1"),
    (r"decoder\.(enc_score_head|enc_bbox_head)\.(.+)", r"decoder.query_selection.\1.\2"),
    (r"(decoder\.(?:denoising_class_embed|tgt_embed|query_pos_head|dec_score_head|dec_bbox_head)\..+)", r"\1"),
]
DROPPED: list[tuple[str, str]] = [
    (r"decoder\.decoder\.layers\.\d+\.cross_attn\.num_points_scale",
     "derived from the point counts (MSDeformableAttention.point_scale)"),
    (r"decoder\.(?:decoder\.)?(?:up|reg_scale)", "D-FINE constant, set by the config (model.decoder.fdr.reg_scale / up)"),
    (r"decoder\.(?:anchors|valid_mask)", "recomputed from the feature-map sizes"),
]


def select_weights(checkpoint: Mapping[str, object], ema: bool = True) -> dict[str, Tensor]:
    """The state dict of an original training checkpoint: ``ema.module`` (with ``ema``) when present, else
    ``model``, else the mapping itself when it already is a state dict."""
    source: object = checkpoint
    inner = checkpoint.get("ema")
    if ema and isinstance(inner, Mapping) and isinstance(inner.get("module"), Mapping):
        source = inner["module"]
    elif isinstance(checkpoint.get("model"), Mapping):
        source = checkpoint["model"]
    if not isinstance(source, Mapping) or not all(isinstance(v, Tensor) for v in source.values()):
        raise ValueError("expected an RT-DETR / D-FINE checkpoint: a state dict, or one under 'ema.module' or 'model'")
    return {k.removeprefix("module."): v for k, v in source.items()}  # DDP-wrapped saves


def convert_rtdetr_repo(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], ConversionReport]:
    """Renames an original RT-DETR / RT-DETRv2 / D-FINE state dict to lightdet's keys; reports every key."""
    dropped = {k: reason for k in state for pattern, reason in DROPPED if re.fullmatch(pattern, k)}
    out, report = rename_keys({k: v for k, v in state.items() if k not in dropped}, RULES)
    report.dropped.update(dropped)
    return out, report

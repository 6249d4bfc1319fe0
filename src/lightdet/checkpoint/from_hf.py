"""Hugging Face ``transformers`` RT-DETR / RT-DETRv2 / D-FINE (``config.json`` + ``model.safetensors``) -> lightdet.

The architecture comes from ``config.json``'s ``model_type`` (``rt_detr``, ``rt_detr_v2``, ``d_fine``); its
sizes become Hydra overrides of the matching lightdet model config (:func:`hf_model_overrides`), so any size,
the published ones and small test models alike, is rebuilt exactly. Keys are renamed by rules (the names ``save_pretrained`` writes, e.g. ``encoder.encoder.0.layers.0.fc1``, and the
in-memory ones of ``transformers`` 5, e.g. ``encoder.aifi.0.layers.0.mlp.fc1``); the separate
``q_proj``/``k_proj``/``v_proj`` of ``transformers``' attention are joined into ``nn.MultiheadAttention``'s
``in_proj_weight``. Nothing here imports ``transformers``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lightdet.checkpoint.report import ConversionReport
from lightdet.checkpoint.rules import Rule, rename_keys

HF_MODEL_TYPES = ("rt_detr", "rt_detr_v2", "d_fine")
_PART = re.compile(r"^(.*)#([qkv])$")
_BN = r"(weight|bias|running_mean|running_var|num_batches_tracked)"
_RESNET = r"model\.backbone\.model\.encoder\.stages\.(\d+)\.layers\.(\d+)\."
_HGNET = r"model\.backbone\.model\."

RESNET_RULES: list[Rule] = [
    *[(rf"model\.backbone\.model\.embedder\.embedder\.{i}\.convolution\.weight", rf"backbone.conv1.conv1_{i + 1}.conv.weight") for i in range(3)],
    *[(rf"model\.backbone\.model\.embedder\.embedder\.{i}\.normalization\.{_BN}", rf"backbone.conv1.conv1_{i + 1}.norm.\1") for i in range(3)],
    *[(_RESNET + rf"layer\.{k}\.convolution\.weight", rf"backbone.res_layers.\1.blocks.\2.branch2{c}.conv.weight") for k, c in enumerate("abc")],
    *[(_RESNET + rf"layer\.{k}\.normalization\.{_BN}", rf"backbone.res_layers.\1.blocks.\2.branch2{c}.norm.\3") for k, c in enumerate("abc")],
    (_RESNET + r"shortcut\.1\.convolution\.weight", r"backbone.res_layers.\1.blocks.\2.short.conv.conv.weight"),
    (_RESNET + rf"shortcut\.1\.normalization\.{_BN}", r"backbone.res_layers.\1.blocks.\2.short.conv.norm.\3"),
    (_RESNET + r"shortcut\.convolution\.weight", r"backbone.res_layers.\1.blocks.\2.short.conv.weight"),
    (_RESNET + rf"shortcut\.normalization\.{_BN}", r"backbone.res_layers.\1.blocks.\2.short.norm.\3"),
]

HGNET_RULES: list[Rule] = [
    (_HGNET + r"embedder\.(stem\w+)\.convolution\.weight", r"backbone.stem.\1.conv.weight"),
    (_HGNET + rf"embedder\.(stem\w+)\.normalization\.{_BN}", r"backbone.stem.\1.bn.\2"),
    (_HGNET + r"embedder\.(stem\w+)\.lab\.(scale|bias)", r"backbone.stem.\1.lab.\2"),
    (_HGNET + r"encoder\.stages\.(.+)\.convolution\.weight", r"backbone.stages.\1.conv.weight"),
    (_HGNET + rf"encoder\.stages\.(.+)\.normalization\.{_BN}", r"backbone.stages.\1.bn.\2"),
    (_HGNET + r"encoder\.stages\.(.+)\.lab\.(scale|bias)", r"backbone.stages.\1.lab.\2"),
]


def _transformer_layer_rules(src: str, dst: str, norms: Mapping[str, str]) -> list[Rule]:
    """Self-attention, layer norms (``norms``: transformers' name -> ours) and FFN of the layers under ``src``."""
    n = re.compile(src).groups  # groups of src come first in every pattern
    g = [f"\\{n + i}" for i in (1, 2)]
    return [
        (src + r"self_attn\.([qkv])_proj\.(weight|bias)", dst + f"self_attn.in_proj_{g[1]}#{g[0]}"),
        (src + r"self_attn\.(?:o_proj|out_proj)\.(weight|bias)", dst + f"self_attn.out_proj.{g[0]}"),
        *[(src + rf"{name}\.(weight|bias)", dst + f"{norm}.{g[0]}") for name, norm in norms.items()],
        (src + r"(?:mlp\.)?(?:fc1|layers\.0)\.(weight|bias)", dst + f"linear1.{g[0]}"),
        (src + r"(?:mlp\.)?(?:fc2|layers\.1)\.(weight|bias)", dst + f"linear2.{g[0]}"),
    ]


ENCODER_RULES: list[Rule] = [
    (r"model\.encoder_input_proj\.(\d+)\.0\.weight", r"encoder.input_proj.\1.conv.weight"),
    (rf"model\.encoder_input_proj\.(\d+)\.1\.{_BN}", r"encoder.input_proj.\1.norm.\2"),
    *_transformer_layer_rules(
        r"model\.encoder\.(?:aifi|encoder)\.(\d+)\.layers\.(\d+)\.", r"encoder.encoder.\1.layers.\2.",
        {"self_attn_layer_norm": "norm1", "final_layer_norm": "norm2"},
    ),
]
# RT-DETR's CSP-RepVGG fusion and conv downsampling keep their names.
CSPREP_RULES: list[Rule] = [
    (r"model\.encoder\.((?:lateral_convs|downsample_convs)\.\d+\.(?:conv|norm)\..+)", r"encoder.\1"),
    (r"model\.encoder\.((?:fpn|pan)_blocks\.\d+\.(?:conv[123]|bottlenecks\.\d+\.conv[12])\.(?:conv|norm)\..+)", r"encoder.\1"),
]
# D-FINE's RepNCSPELAN4 and SCDown: transformers' conv1/csp_rep1/conv2/csp_rep2/conv3/conv4, conv1/conv2.
ELAN_RULES: list[Rule] = [
    (r"model\.encoder\.(lateral_convs\.\d+\.(?:conv|norm)\..+)", r"encoder.\1"),
    *[(rf"model\.encoder\.((?:fpn|pan)_blocks\.\d+)\.{src}\.(.+)", rf"encoder.\1.{dst}.\2") for src, dst in (
        ("conv1", "cv1"), ("csp_rep1", "cv2.0"), ("conv2", "cv2.1"), ("csp_rep2", "cv3.0"), ("conv3", "cv3.1"),
        ("conv4", "cv4"))],
    (r"model\.encoder\.downsample_convs\.(\d+)\.conv([12])\.(.+)", r"encoder.downsample_convs.\1.cv\2.\3"),
]
DECODER_RULES: list[Rule] = [
    (r"model\.decoder_input_proj\.(\d+)\.0\.weight", r"decoder.input_proj.\1.conv.weight"),
    (rf"model\.decoder_input_proj\.(\d+)\.1\.{_BN}", r"decoder.input_proj.\1.norm.\2"),
    (r"model\.denoising_class_embed\.weight", "decoder.denoising_class_embed.weight"),
    (r"model\.weight_embedding\.weight", "decoder.tgt_embed.weight"),
    (r"model\.enc_output\.0\.(weight|bias)", r"decoder.query_selection.enc_output.proj.\1"),
    (r"model\.enc_output\.1\.(weight|bias)", r"decoder.query_selection.enc_output.norm.\1"),
    (r"model\.(enc_score_head|enc_bbox_head)\.(.+)", r"decoder.query_selection.\1.\2"),
    *_transformer_layer_rules(
        r"model\.decoder\.layers\.(\d+)\.", r"decoder.layers.\1.",
        {"self_attn_layer_norm": "norm1", "encoder_attn_layer_norm": "norm2", "final_layer_norm": "norm3"},
    ),
    (r"model\.decoder\.layers\.(\d+)\.encoder_attn\.(sampling_offsets|attention_weights|value_proj|output_proj)\.(weight|bias)",
     r"decoder.layers.\1.cross_attn.\2.\3"),
    (r"model\.decoder\.layers\.(\d+)\.gateway\.(gate|norm)\.(weight|bias)", r"decoder.layers.\1.gateway.\2.\3"),
    (r"model\.decoder\.query_pos_head\.(.+)", r"decoder.query_pos_head.\1"),
    (r"model\.decoder\.class_embed\.(.+)", r"decoder.dec_score_head.\1"),
    (r"model\.decoder\.bbox_embed\.(.+)", r"decoder.dec_bbox_head.\1"),
    (r"model\.decoder\.pre_bbox_head\.(.+)", r"decoder.fdr.pre_bbox_head.\1"),
    (r"model\.decoder\.lqe_layers\.(.+)", r"decoder.fdr.lqe_layers.\1"),
]
DROPPED: list[tuple[str, str]] = [
    (r"(?:class_embed|bbox_embed)\..+", "tied copy of model.decoder.{class,bbox}_embed"),
    (r"model\.decoder\.layers\.\d+\.encoder_attn\.(?:n_points_scale|num_points_scale)",
     "derived from the point counts (MSDeformableAttention.point_scale)"),
    (r"model\.decoder\.(?:reg_scale|up)", "D-FINE constant, set by the config (model.decoder.fdr.reg_scale / up)"),
    (r"model\.(?:anchors|valid_mask)", "recomputed from the feature-map sizes"),
]


def hf_rules(model_type: str) -> list[Rule]:
    """The renaming rules of a ``transformers`` checkpoint of ``model_type``."""
    if model_type not in HF_MODEL_TYPES:
        raise ValueError(f"Hugging Face model_type must be one of {HF_MODEL_TYPES}, got {model_type!r}")
    if model_type == "d_fine":
        return [*HGNET_RULES, *ENCODER_RULES, *ELAN_RULES, *DECODER_RULES]
    return [*RESNET_RULES, *ENCODER_RULES, *CSPREP_RULES, *DECODER_RULES]


def convert_hf_state_dict(state: Mapping[str, Tensor], model_type: str) -> tuple[dict[str, Tensor], ConversionReport]:
    """Renames a ``transformers`` state dict to lightdet's keys (q/k/v joined); reports every key's fate."""
    dropped = {k: reason for k in state for pattern, reason in DROPPED if re.fullmatch(pattern, k)}
    out, report = rename_keys({k: v for k, v in state.items() if k not in dropped}, hf_rules(model_type))
    report.dropped.update(dropped)
    return join_qkv(out, report), report


def join_qkv(state: dict[str, Tensor], report: ConversionReport) -> dict[str, Tensor]:
    """Concatenates keys tagged ``#q``, ``#k``, ``#v`` into one tensor (rows in that order)."""
    parts: dict[str, dict[str, Tensor]] = {}
    out = {}
    for key, value in state.items():
        match = _PART.match(key)
        if match:
            parts.setdefault(match[1], {})[match[2]] = value
        else:
            out[key] = value
    for base, tensors in parts.items():
        if sorted(tensors) != ["k", "q", "v"]:
            raise ValueError(f"attention projection {base}: found {sorted(tensors)} of q, k, v")
        out[base] = torch.cat([tensors["q"], tensors["k"], tensors["v"]])
    report.converted.update({src: _PART.sub(r"\1", dst) for src, dst in report.converted.items()})
    return out


def read_hf_folder(path: Path) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """``config.json`` and ``model.safetensors`` of a folder (or of the folder holding the given file)."""
    from safetensors.torch import load_file

    folder = path if path.is_dir() else path.parent
    config_file, weights_file = folder / "config.json", folder / "model.safetensors"
    for f in (config_file, weights_file):
        if not f.is_file():
            raise FileNotFoundError(f"{f}: a Hugging Face checkpoint needs config.json and model.safetensors")
    return json.loads(config_file.read_text()), load_file(str(weights_file))


def _resnet_overrides(backbone: Mapping[str, Any]) -> list[str]:
    """``rt_detr_resnet`` backbone config -> PResNet overrides (depth, blocks per stage)."""
    bottleneck = backbone.get("layer_type", "bottleneck") == "bottleneck"
    depths = list(backbone.get("depths", [3, 4, 6, 3]))
    widths = [64, 128, 256, 512]
    expected = [w * (4 if bottleneck else 1) for w in widths]
    if backbone.get("embedding_size", 64) != 64 or list(backbone.get("hidden_sizes", expected)) != expected:
        raise ValueError(f"unsupported ResNet-vd widths {backbone.get('hidden_sizes')} (lightdet's PResNet: {expected})")
    known = {(False, (2, 2, 2, 2)): 18, (False, (3, 4, 6, 3)): 34, (True, (3, 4, 6, 3)): 50, (True, (3, 4, 23, 3)): 101}
    depth = known.get((bottleneck, tuple(depths)), 50 if bottleneck else 18)
    blocks = "null" if (bottleneck, tuple(depths)) in known else str(depths)
    return [f"model.backbone.depth={depth}", f"model.backbone.num_blocks={blocks}", "model.backbone.norm=FrozenBN"]


def _hgnet_overrides(backbone: Mapping[str, Any]) -> list[str]:
    """``hgnet_v2`` backbone config -> HGNetv2 overrides (the B0-B6 whose stage table matches)."""
    from lightdet.models.backbones.hgnetv2 import HGNETV2_ARCHS

    stages = tuple(zip(
        backbone["stage_in_channels"], backbone["stage_mid_channels"], backbone["stage_out_channels"],
        backbone["stage_num_blocks"], backbone["stage_downsample"], backbone["stage_light_block"],
        backbone["stage_kernel_size"], backbone["stage_numb_of_layers"],
    ))
    for name, (stem, table) in HGNETV2_ARCHS.items():
        if tuple(backbone["stem_channels"]) == stem and stages == table:
            lab = str(bool(backbone.get("use_learnable_affine_block", False))).lower()
            return [f"model.backbone.name={name}", f"model.backbone.use_lab={lab}", "model.backbone.norm=FrozenBN"]
    raise ValueError("the HGNetv2 stage table of this checkpoint is none of B0-B6")


def _out_indices(backbone: Mapping[str, Any]) -> list[str]:
    """``out_features`` (stage1..4) or ``out_indices`` (1..4) -> lightdet's 0-based stage indices."""
    if backbone.get("out_features"):
        return [f"model.backbone.out_indices={[int(f[-1]) - 1 for f in backbone['out_features']]}"]
    return [f"model.backbone.out_indices={[i - 1 for i in backbone.get('out_indices', [2, 3, 4])]}"]


def _act(name: str | None) -> str:
    return "null" if name is None else name


def hf_model_overrides(config: Mapping[str, Any]) -> tuple[str, list[str]]:
    """``config.json`` -> (lightdet model config name, Hydra overrides) that rebuild the same network."""
    model_type = config.get("model_type")
    if model_type not in HF_MODEL_TYPES:
        raise ValueError(f"config.json model_type must be one of {HF_MODEL_TYPES}, got {model_type!r}")
    if config.get("normalize_before") or not config.get("with_box_refine", True):
        raise ValueError("normalize_before / with_box_refine=false checkpoints are not supported")
    c = dict(config)
    backbone = c.get("backbone_config") or {}
    dfine = model_type == "d_fine"
    name = "dfine_l" if dfine else "rtdetr_r50vd"
    act = _act(c.get("activation_function", "silu"))
    points = c.get("decoder_n_points", 4)
    out = [
        *(_hgnet_overrides(backbone) if dfine else _resnet_overrides(backbone)), *_out_indices(backbone),
        f"model.encoder.in_channels={list(c['encoder_in_channels'])}", f"model.encoder.strides={list(c['feat_strides'])}",
        f"model.encoder.hidden_dim={c['encoder_hidden_dim']}", f"model.encoder.num_heads={c['encoder_attention_heads']}",
        f"model.encoder.ffn_dim={c['encoder_ffn_dim']}", f"model.encoder.enc_act={_act(c['encoder_activation_function'])}",
        f"model.encoder.use_encoder_idx={list(c['encode_proj_layers'])}",
        f"model.encoder.num_encoder_layers={c['encoder_layers']}",
        f"model.encoder.pe_temperature={c['positional_encoding_temperature']}",
        f"model.encoder.fuse_block.expansion={c['hidden_expansion']}", f"model.encoder.fuse_block.act={act}",
        f"model.decoder.in_channels={list(c['decoder_in_channels'])}", f"model.decoder.hidden_dim={c['d_model']}",
        f"model.decoder.num_queries={c['num_queries']}", f"model.decoder.num_layers={c['decoder_layers']}",
        f"model.decoder.num_heads={c['decoder_attention_heads']}", f"model.decoder.ffn_dim={c['decoder_ffn_dim']}",
        f"model.decoder.act={_act(c['decoder_activation_function'])}",
        f"model.decoder.num_levels={c['num_feature_levels']}", f"model.decoder.num_points={points}",
        f"model.decoder.offset_scale={c.get('decoder_offset_scale', 0.5)}",
        f"model.decoder.method={c.get('decoder_method', 'default')}",
        f"model.decoder.num_denoising={c['num_denoising']}", f"model.decoder.label_noise_ratio={c['label_noise_ratio']}",
        f"model.decoder.box_noise_scale={c['box_noise_scale']}",
        f"model.decoder.learn_query_content={str(bool(c['learn_initial_query'])).lower()}",
        f"model.num_top_queries={c['num_queries']}",
        *_criterion_overrides(c),
    ]
    if dfine:
        out += _dfine_overrides(c)
    else:
        out += [f"model.encoder.lateral_act={act}", f"model.encoder.downsample.act={act}"]
    return name, out


def _criterion_overrides(c: Mapping[str, Any]) -> list[str]:
    keys = {
        "matcher.class_weight": "matcher_class_cost", "matcher.bbox_weight": "matcher_bbox_cost",
        "matcher.giou_weight": "matcher_giou_cost", "matcher.alpha": "matcher_alpha", "matcher.gamma": "matcher_gamma",
        "weight_vfl": "weight_loss_vfl", "weight_bbox": "weight_loss_bbox", "weight_giou": "weight_loss_giou",
        "weight_fgl": "weight_loss_fgl", "weight_ddf": "weight_loss_ddf", "alpha": "focal_loss_alpha",
        "gamma": "focal_loss_gamma",
    }
    return [f"model.criterion.{ours}={c[theirs]}" for ours, theirs in keys.items() if theirs in c]


def _dfine_overrides(c: Mapping[str, Any]) -> list[str]:
    return [
        f"model.encoder.fuse_block.num_blocks={round(3 * c.get('depth_mult', 1.0))}",
        f"model.decoder.eval_idx={c.get('eval_idx', -1)}",
        f"model.decoder.fdr.reg_max={c['max_num_bins']}", f"model.decoder.fdr.reg_scale={c['reg_scale']}",
        f"model.decoder.fdr.up={c['up']}", f"model.decoder.fdr.lqe_top_k={c['top_prob_values']}",
        f"model.decoder.fdr.lqe_hidden_dim={c['lqe_hidden_dim']}", f"model.decoder.fdr.lqe_layers={c['lqe_layers']}",
    ]


def hf_class_names(config: Mapping[str, Any]) -> list[str]:
    """Class names ordered by label id (``id2label``); without one, ``transformers``' default of two labels
    named ``LABEL_0``, ``LABEL_1`` (``num_labels`` if given)."""
    id2label = config.get("id2label") or {}
    n = int(config.get("num_labels", len(id2label) or 2))
    return [str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in range(n)]


#: transformers' image processor for these models: a 640x640 resize (no aspect ratio kept), then x / 255.
HF_TEST_PIPELINE = (
    "dataset.pipeline.test=[{_target_:lightdet.data.LoadImage},"
    "{_target_:lightdet.data.Resize,scale:[640,640],keep_ratio:false}]"
)


def _quoted(names: list[str]) -> str:
    """A Hydra override list of quoted strings (class names may hold spaces and commas)."""
    return "[" + ",".join("'" + n.replace("\\", "\\\\").replace("'", "\\'") + "'" for n in names) + "]"


def hf_overrides(config: Mapping[str, Any], arch: str | None = None) -> list[str]:
    """Hydra overrides of ``lightdet-train``'s config that run a ``transformers`` checkpoint as it runs there:
    the model rebuilt from ``config.json``, COCO's evaluation with ``id2label``'s classes, the 640x640 test
    resize and inputs scaled to ``[0, 1]`` (the model configs' preprocessor).

    Raises:
        ValueError: ``arch`` is given and differs from ``config.json``'s ``model_type``.
    """
    model_type = config.get("model_type")
    if arch is not None and arch != model_type:
        raise ValueError(f"ARCH {arch!r} differs from config.json's model_type {model_type!r}")
    name, model = hf_model_overrides(config)
    return [f"model={name}", *model, "dataset=coco", f"dataset.classes={_quoted(hf_class_names(config))}", HF_TEST_PIPELINE]

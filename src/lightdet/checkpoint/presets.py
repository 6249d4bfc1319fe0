"""Per published architecture: the lightdet config that reproduces its numerics, and the weight converter.

A preset names the model config (``conf/model/<name>.yaml``) and the Hydra overrides (relative to the root
config, e.g. ``lightdet-train``'s) under which lightdet computes what the source library computes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from lightdet.checkpoint import from_mmdet, from_mmdet_rtmdet, from_torchvision
from lightdet.checkpoint.report import ConversionReport, check_against_target
from lightdet.checkpoint.rules import unwrap_state_dict

SOURCES = ("torchvision", "mmdet")


@dataclass(frozen=True)
class Preset:
    """How to load one published architecture.

    Attributes:
        source, arch: e.g. ``("torchvision", "fasterrcnn_resnet50_fpn")``.
        model: the model config name (``model=<model>``).
        overrides: Hydra overrides after ``model=<model>`` that match the source's numerics.
        num_classes: foreground classes of the converted head (``num_classes_coco80`` with ``coco80``).
        converter: ``(state_dict, coco80) -> (converted state dict, report)``.
    """

    source: str
    arch: str
    model: str
    overrides: tuple[str, ...]
    num_classes: int
    num_classes_coco80: int
    converter: Callable[[Mapping[str, Tensor], bool], tuple[dict[str, Tensor], ConversionReport]]

    def hydra_overrides(self) -> list[str]:
        """``["model=<model>", *overrides]``, ready for ``hydra.compose`` on the root config."""
        return [f"model={self.model}", *self.overrides]



def _smooth_l1(node: str) -> tuple[str, str]:
    """Overrides that make ``node`` torchvision's smooth L1 loss (beta 1/9)."""
    return (f"{node}._target_=lightdet.models.SmoothL1Loss", f"++{node}.beta=0.1111111111111111")

PRESETS: dict[tuple[str, str], Preset] = {
    ("torchvision", "fasterrcnn_resnet50_fpn"): Preset(
        source="torchvision",
        arch="fasterrcnn_resnet50_fpn",
        model="faster_rcnn",
        overrides=(
            "model.backbone.norm=FrozenBN",
            "model.rpn_head.anchor_generator.round_base_anchors=true",
            "model.rpn_head.anchor_generator.strides_from_image=true",
            "model.rpn_head.box_coder.clamp_both_sides=false",
            "model.rpn_head.train_pre_nms_top_n=2000",
            "model.rpn_head.train_post_nms_top_n=2000",
            "model.rpn_head.test_pre_nms_top_n=1000",
            "model.rpn_head.test_post_nms_top_n=1000",
            "model.rpn_head.min_box_size=0.001",
            *_smooth_l1("model.rpn_head.loss_bbox"),
            "model.roi_head.bbox_roi_extractor.sampling_ratio=2",
            "model.roi_head.bbox_roi_extractor.aligned=false",
            "model.roi_head.bbox_roi_extractor.level_mapping=torchvision",
            "model.roi_head.bbox_head.box_coder.clamp_both_sides=false",
            *_smooth_l1("model.roi_head.bbox_head.loss_bbox"),
            "model.roi_head.min_box_size=0.01",
        ),
        num_classes=90,
        num_classes_coco80=80,
        converter=lambda state, coco80: from_torchvision.convert_faster_rcnn(state, coco80=coco80),
    ),
    ("mmdet", "faster_rcnn_r50_fpn_1x_coco"): Preset(
        source="mmdet",
        arch="faster_rcnn_r50_fpn_1x_coco",
        model="faster_rcnn",
        overrides=(),  # conf/model/faster_rcnn.yaml carries MMDetection's defaults
        num_classes=80,
        num_classes_coco80=80,
        converter=lambda state, coco80: from_mmdet.convert_faster_rcnn(state),
    ),
}

# --- RetinaNet and FCOS ------------------------------------------------------------------------------------
# torchvision's one-stage models: P6 from P5 with a ReLU before P7, anchors/points placed with its
# padded_size // feature_size strides, deltas clamped only from above.
_TV_P3P7 = (
    "model.backbone.norm=FrozenBN",
    "model.neck.add_extra_convs=on_output",
    "model.neck.relu_before_extra_convs=true",
)
_TV_RETINA_ANCHORS = "model.bbox_head.anchor_generator"
# torchvision lists int(size * 2 ** (i / 3)) per level, which shared scales cannot reproduce.
_TV_RETINA_ANCHOR_NODE = (
    "{_target_:lightdet.models.AnchorGenerator,strides:[8,16,32,64,128],scales:null,"
    "sizes:[[32,40,50],[64,80,101],[128,161,203],[256,322,406],[512,645,812]],ratios:[0.5,1.0,2.0],"
    "center_offset:0.0,round_base_anchors:true,strides_from_image:true}"
)

PRESETS.update({
    ("torchvision", "retinanet_resnet50_fpn"): Preset(
        source="torchvision",
        arch="retinanet_resnet50_fpn",
        model="retinanet",
        overrides=(
            *_TV_P3P7,
            f"~{_TV_RETINA_ANCHORS}",
            f"+{_TV_RETINA_ANCHORS}={_TV_RETINA_ANCHOR_NODE}",
            "model.bbox_head.box_coder.clamp_both_sides=false",
            "model.bbox_head.max_per_img=300",
        ),
        num_classes=90,
        num_classes_coco80=80,
        converter=lambda state, coco80: from_torchvision.convert_retinanet(state, coco80=coco80),
    ),
    ("torchvision", "fcos_resnet50_fpn"): Preset(
        source="torchvision",
        arch="fcos_resnet50_fpn",
        model="fcos",
        overrides=(
            *_TV_P3P7,
            "model.backbone.style=pytorch",
            "model.preprocessor.mean=[123.675,116.28,103.53]",
            "model.preprocessor.std=[58.395,57.12,57.375]",
            "model.preprocessor.to_bgr=false",
            "model.bbox_head.conv_bias=true",
            "model.bbox_head.point_generator.offset=0.0",
            "model.bbox_head.point_generator.strides_from_image=true",
            "model.bbox_head.assigner.center_sampling=true",
            "model.bbox_head.loss_bbox._target_=lightdet.models.GIoULoss",
            "model.bbox_head.norm_on_bbox=true",
            "model.bbox_head.centerness_on_reg=true",
            "model.bbox_head.learnable_scales=false",
            "model.bbox_head.centerness_weighted_bbox=false",
            "model.bbox_head.score_mode=sqrt",
            "model.bbox_head.score_thr=0.2",
            "model.bbox_head.nms.iou_threshold=0.6",
        ),
        num_classes=90,
        num_classes_coco80=80,
        converter=lambda state, coco80: from_torchvision.convert_fcos(state, coco80=coco80),
    ),
    ("mmdet", "retinanet_r50_fpn_1x_coco"): Preset(
        source="mmdet",
        arch="retinanet_r50_fpn_1x_coco",
        model="retinanet",
        overrides=(),  # conf/model/retinanet.yaml carries MMDetection's defaults
        num_classes=80,
        num_classes_coco80=80,
        converter=lambda state, coco80: from_mmdet.convert_retinanet(state),
    ),
    ("mmdet", "fcos_r50_caffe_fpn_gn-head_1x_coco"): Preset(
        source="mmdet",
        arch="fcos_r50_caffe_fpn_gn-head_1x_coco",
        model="fcos",
        overrides=(),  # conf/model/fcos.yaml carries MMDetection's defaults
        num_classes=80,
        num_classes_coco80=80,
        converter=lambda state, coco80: from_mmdet.convert_fcos(state),
    ),
})

# --- Mask R-CNN and Cascade (Mask) R-CNN ---------------------------------------------------------------
# torchvision's mask branch: the box branch's RoIAlign settings (followed by interpolation), soft RoIAlign
# targets without the half-pixel shift, and its paste geometry (see lightdet.models.ops.masks.paste_regions).
_TV_MASK_HEAD = (
    "model.roi_head.mask_head.target_aligned=false",
    "model.roi_head.mask_head.binarize_targets=false",
    "model.roi_head.mask_head.paste_mode=torchvision",
)
PRESETS.update({
    ("torchvision", "maskrcnn_resnet50_fpn"): Preset(
        source="torchvision",
        arch="maskrcnn_resnet50_fpn",
        model="mask_rcnn",
        overrides=(*PRESETS[("torchvision", "fasterrcnn_resnet50_fpn")].overrides, *_TV_MASK_HEAD),
        num_classes=90,
        num_classes_coco80=80,
        converter=lambda state, coco80: from_torchvision.convert_mask_rcnn(state, coco80=coco80),
    ),
    ("mmdet", "mask_rcnn_r50_fpn_1x_coco"): Preset(
        source="mmdet",
        arch="mask_rcnn_r50_fpn_1x_coco",
        model="mask_rcnn",
        overrides=(),  # conf/model/mask_rcnn.yaml carries MMDetection's defaults
        num_classes=80,
        num_classes_coco80=80,
        converter=lambda state, coco80: from_mmdet.convert_mask_rcnn(state),
    ),
    ("mmdet", "cascade_rcnn_r50_fpn_1x_coco"): Preset(
        source="mmdet",
        arch="cascade_rcnn_r50_fpn_1x_coco",
        model="cascade_rcnn",
        overrides=(),  # conf/model/cascade_rcnn.yaml carries MMDetection's defaults
        num_classes=80,
        num_classes_coco80=80,
        converter=lambda state, coco80: from_mmdet.convert_cascade_rcnn(state),
    ),
    ("mmdet", "cascade_mask_rcnn_r50_fpn_1x_coco"): Preset(
        source="mmdet",
        arch="cascade_mask_rcnn_r50_fpn_1x_coco",
        model="cascade_mask_rcnn",
        overrides=(),
        num_classes=80,
        num_classes_coco80=80,
        converter=lambda state, coco80: from_mmdet.convert_cascade_rcnn(state),
    ),
})


# --- RTMDet: conf/model/rtmdet_*.yaml carry MMDetection's published settings ------------------------------
PRESETS.update({
    ("mmdet", f"rtmdet_{size}_8xb32-300e_coco"): Preset(
        source="mmdet",
        arch=f"rtmdet_{size}_8xb32-300e_coco",
        model=f"rtmdet_{size}",
        overrides=(),
        num_classes=80,
        num_classes_coco80=80,
        converter=lambda state, coco80: from_mmdet_rtmdet.convert_rtmdet(state),
    )
    for size in ("tiny", "s", "m", "l", "x")
})


def get_preset(source: str, arch: str) -> Preset:
    """The preset of ``arch`` from ``source``; raises ``ValueError`` listing the known ones."""
    try:
        return PRESETS[(source, arch)]
    except KeyError:
        known = ", ".join(f"{s} {a}" for s, a in PRESETS)
        raise ValueError(f"no checkpoint preset for {source} {arch!r}; known: {known}") from None


def compose_model_config(
    preset: Preset, *, coco80: bool = False, overrides: Sequence[str] = ()
) -> DictConfig:
    """Composes ``{model: ..., dataset: {num_classes: ...}}`` for ``preset`` from the packaged configs."""
    from lightdet.composition import compose_config

    num_classes = preset.num_classes_coco80 if coco80 else preset.num_classes
    args = [f"+model={preset.model}", f"+dataset.num_classes={num_classes}", *preset.overrides, *overrides]
    return compose_config(None, args)


def build_model(
    source: str, arch: str, *, coco80: bool = False, device: torch.device | str = "meta"
) -> nn.Module:
    """Instantiates the preset's model (on the ``meta`` device by default: shapes only, no memory)."""
    from hydra.utils import instantiate

    cfg = compose_model_config(get_preset(source, arch), coco80=coco80)
    with torch.device(device):
        return instantiate(cfg.model)


def convert(
    source: str,
    arch: str,
    state_dict: Mapping[str, object],
    *,
    coco80: bool = False,
    target: Mapping[str, Tensor] | None = None,
) -> tuple[dict[str, Tensor], ConversionReport, list[str]]:
    """Converts a published checkpoint of ``arch`` to lightdet's key names and layout.

    Args:
        source: ``"torchvision"`` or ``"mmdet"``.
        arch: e.g. ``"fasterrcnn_resnet50_fpn"`` or ``"faster_rcnn_r50_fpn_1x_coco"``.
        state_dict: the loaded file: a state dict, or a dict holding one under ``state_dict`` (MMDetection,
            whose ``meta`` is ignored) or ``model`` (torchvision's reference scripts).
        coco80: torchvision only: keep the 80 real COCO classes instead of the 90 ids (see
            :func:`lightdet.checkpoint.from_torchvision.convert_faster_rcnn`).
        target: the state dict of the model the weights are for; defaults to the preset's model (built on the
            meta device). Keys are checked against it: see :class:`ConversionReport`.

    Returns:
        ``(state_dict, report, overrides)``: the tensors to load (all of the right shape for ``target``),
        what happened to every key, and the Hydra overrides (``model=...`` first) that reproduce the source's
        numerics.
    """
    if source not in SOURCES:
        raise ValueError(f"checkpoint source must be one of {SOURCES}, got {source!r}")
    preset = get_preset(source, arch)
    state = unwrap_state_dict(state_dict, f"{source} {arch} checkpoint")
    converted, report = preset.converter(state, coco80)
    if target is None:
        target = build_model(source, arch, coco80=coco80).state_dict()
    converted = check_against_target(converted, report, target)
    return converted, report, preset.hydra_overrides()

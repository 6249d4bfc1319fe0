"""MMDetection RTMDet checkpoints: every published key of rtmdet_{tiny,s,m,l,x} is converted, and (where
MMDetection can run) lightdet computes what MMDetection computes from the same weights.

The expected keys and shapes are derived here from MMDetection's code and configs (mmdet/models/backbones/
cspnext.py, layers/csp_layer.py, necks/cspnext_pafpn.py, dense_heads/rtmdet_head.py, configs/rtmdet/*.py),
independently of lightdet's modules.

The MMDetection comparisons skip unless ``mmdet`` imports. mmcv's compiled ops are not needed for RTMDet
(the test stands in torchvision's NMS for them), so a test-only directory put on PYTHONPATH is enough::

    pip install --no-deps --target DIR mmdet==3.3.0 mmengine==0.10.7 mmcv-lite==2.1.0 \
        addict termcolor yapf terminaltables shapely six
    PYTHONPATH=DIR pytest tests/checkpoint/test_convert_rtmdet.py
"""

from __future__ import annotations

import copy
import sys
import types

import pytest
import torch

from lightdet.checkpoint import build_model, convert, get_preset

# size: (deepen_factor, widen_factor, neck out_channels, neck num_csp_blocks), configs/rtmdet/rtmdet_*.py
SIZES = {
    "tiny": (0.167, 0.375, 96, 1),
    "s": (0.33, 0.5, 128, 1),
    "m": (0.67, 0.75, 192, 2),
    "l": (1.0, 1.0, 256, 3),
    "x": (1.33, 1.25, 320, 4),
}
ARCHS = [f"rtmdet_{size}_8xb32-300e_coco" for size in SIZES]
Shapes = dict[str, tuple[int, ...]]


def _conv_module(prefix: str, cin: int, cout: int, k: int, groups: int = 1) -> Shapes:
    """mmcv ConvModule with BN: ``conv`` (no bias) and ``bn``."""
    bn = {f"{prefix}.bn.{n}": (cout,) for n in ("weight", "bias", "running_mean", "running_var")}
    return {
        f"{prefix}.conv.weight": (cout, cin // groups, k, k),
        **bn,
        f"{prefix}.bn.num_batches_tracked": (),
    }


def _dw_separable(prefix: str, cin: int, cout: int, k: int) -> Shapes:
    return {
        **_conv_module(f"{prefix}.depthwise_conv", cin, cin, k, groups=cin),
        **_conv_module(f"{prefix}.pointwise_conv", cin, cout, 1),
    }


def _csp_layer(prefix: str, cin: int, cout: int, blocks: int, attention: bool) -> Shapes:
    mid = int(cout * 0.5)
    keys = {
        **_conv_module(f"{prefix}.main_conv", cin, mid, 1),
        **_conv_module(f"{prefix}.short_conv", cin, mid, 1),
        **_conv_module(f"{prefix}.final_conv", 2 * mid, cout, 1),
    }
    for j in range(blocks):  # CSPNeXtBlock: 3x3 ConvModule, then a 5x5 depthwise-separable module
        keys.update(_conv_module(f"{prefix}.blocks.{j}.conv1", mid, mid, 3))
        keys.update(_dw_separable(f"{prefix}.blocks.{j}.conv2", mid, mid, 5))
    if attention:
        keys.update(
            {
                f"{prefix}.attention.fc.weight": (2 * mid, 2 * mid, 1, 1),
                f"{prefix}.attention.fc.bias": (2 * mid,),
            }
        )
    return keys


def mmdet_rtmdet_shapes(size: str, num_classes: int = 80) -> Shapes:
    """The state-dict keys and shapes of MMDetection's RTMDet-``size`` detector."""
    deepen, widen, neck_out, neck_blocks = SIZES[size]
    stem = int(64 * widen // 2)
    keys = {**_conv_module("backbone.stem.0", 3, stem, 3), **_conv_module("backbone.stem.1", stem, stem, 3)}
    keys.update(_conv_module("backbone.stem.2", stem, int(64 * widen), 3))
    arch = [(64, 128, 3, False), (128, 256, 6, False), (256, 512, 6, False), (512, 1024, 3, True)]  # P5, SPP
    for i, (cin, cout, blocks, spp) in enumerate(arch, start=1):
        cin, cout = int(cin * widen), int(cout * widen)
        keys.update(_conv_module(f"backbone.stage{i}.0", cin, cout, 3))
        if spp:
            keys.update(_conv_module(f"backbone.stage{i}.1.conv1", cout, cout // 2, 1))
            keys.update(_conv_module(f"backbone.stage{i}.1.conv2", cout // 2 * 4, cout, 1))
        csp = max(round(blocks * deepen), 1)
        keys.update(_csp_layer(f"backbone.stage{i}.{2 if spp else 1}", cout, cout, csp, attention=True))
    chans = [int(256 * widen), int(512 * widen), int(1024 * widen)]
    for step, idx in enumerate((2, 1)):
        keys.update(_conv_module(f"neck.reduce_layers.{step}", chans[idx], chans[idx - 1], 1))
        keys.update(
            _csp_layer(f"neck.top_down_blocks.{step}", chans[idx - 1] * 2, chans[idx - 1], neck_blocks, False)
        )
    for i in range(2):
        keys.update(_conv_module(f"neck.downsamples.{i}", chans[i], chans[i], 3))
        keys.update(_csp_layer(f"neck.bottom_up_blocks.{i}", chans[i] * 2, chans[i + 1], neck_blocks, False))
    for i in range(3):
        keys.update(_conv_module(f"neck.out_convs.{i}", chans[i], neck_out, 3))
    for level in range(3):  # RTMDetSepBNHead, stacked_convs 2, feat_channels = in_channels = neck_out
        for tower in ("cls_convs", "reg_convs"):
            for i in range(2):
                keys.update(_conv_module(f"bbox_head.{tower}.{level}.{i}", neck_out, neck_out, 3))
        keys.update({f"bbox_head.rtm_cls.{level}.weight": (num_classes, neck_out, 1, 1)})
        keys.update(
            {f"bbox_head.rtm_cls.{level}.bias": (num_classes,), f"bbox_head.rtm_reg.{level}.bias": (4,)}
        )
        keys.update({f"bbox_head.rtm_reg.{level}.weight": (4, neck_out, 1, 1)})
    return keys


def _published(shapes: Shapes) -> dict[str, torch.Tensor]:
    """A checkpoint of those keys, each tensor filled with its index."""
    return {k: torch.full(s, float(i)) for i, (k, s) in enumerate(shapes.items())}


@pytest.mark.parametrize("size", list(SIZES))
def test_every_published_key_is_converted(size: str):
    arch = f"rtmdet_{size}_8xb32-300e_coco"
    expected = mmdet_rtmdet_shapes(size)
    target = build_model("mmdet", arch).state_dict()
    assert {k: tuple(v.shape) for k, v in target.items()} == expected
    state = _published(expected)
    converted, report, overrides = convert("mmdet", arch, {"state_dict": state, "meta": {}}, target=target)
    assert report.ok, report.summary()
    assert not report.dropped and report.converted == {k: k for k in expected}
    assert all(torch.equal(converted[k], state[k]) for k in expected)
    assert overrides == [f"model=rtmdet_{size}"]


def test_parameter_counts_match_the_published_models():
    published = {"tiny": 4.8, "s": 8.9, "m": 24.7, "l": 52.3, "x": 94.9}  # millions, configs/rtmdet/README.md
    for size, millions in published.items():
        model = build_model("mmdet", f"rtmdet_{size}_8xb32-300e_coco")
        assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(millions, abs=0.1)


def test_unknown_and_missing_keys_are_reported():
    arch = "rtmdet_tiny_8xb32-300e_coco"
    target = build_model("mmdet", arch).state_dict()
    state = _published(mmdet_rtmdet_shapes("tiny"))
    state["bbox_head.rtm_obj.0.weight"] = torch.zeros(1, 96, 1, 1)  # objectness branch: not in RTMDet
    del state["backbone.stage4.2.attention.fc.bias"]
    _, report, _ = convert("mmdet", arch, state, target=target)
    assert report.unexpected == ["bbox_head.rtm_obj.0.weight"]
    assert report.missing == ["backbone.stage4.2.attention.fc.bias"]
    assert get_preset("mmdet", arch).num_classes == 80


# --- numerics against MMDetection itself -------------------------------------------------------------------


def _import_mmdet() -> types.ModuleType:
    """mmdet's models, with a stand-in for mmcv's compiled ops when only mmcv-lite is installed.

    mmdet imports mmcv.ops everywhere; the RTMDet path runs none of them except NMS at test time, which the
    stand-in takes from torchvision.
    """
    pytest.importorskip("mmcv")
    pytest.importorskip("mmengine")
    try:
        import mmcv._ext  # noqa: F401
    except ImportError:
        import torchvision

        shim = types.ModuleType("mmcv._ext")
        shim.nms = lambda boxes, scores, iou_threshold, offset=0: torchvision.ops.nms(
            boxes, scores, iou_threshold
        )

        def _absent(name: str) -> object:
            def op(*args: object, **kwargs: object) -> None:
                raise NotImplementedError(f"mmcv op {name} is not available here")

            return op

        shim.__getattr__ = _absent  # type: ignore[method-assign]
        sys.modules["mmcv._ext"] = shim
    mmdet_models = pytest.importorskip("mmdet.models")
    from mmdet.utils import register_all_modules

    register_all_modules()
    return mmdet_models


def _mmdet_rtmdet(size: str, exp_on_reg: bool) -> torch.nn.Module:
    """MMDetection's RTMDet-``size`` as configs/rtmdet/rtmdet_{size}_8xb32-300e_coco.py builds it (BN for
    SyncBN: one process)."""
    from mmdet.registry import MODELS
    from mmengine.config import ConfigDict

    deepen, widen, out, blocks = SIZES[size]
    bn, act = dict(type="BN"), dict(type="SiLU", inplace=True)
    chans = [int(256 * widen), int(512 * widen), int(1024 * widen)]
    cfg = dict(
        type="RTMDet",
        data_preprocessor=dict(type="DetDataPreprocessor", mean=[103.53, 116.28, 123.675], std=[57.375, 57.12, 58.395], bgr_to_rgb=False),
        backbone=dict(type="CSPNeXt", arch="P5", expand_ratio=0.5, deepen_factor=deepen, widen_factor=widen, channel_attention=True, norm_cfg=bn, act_cfg=act),
        neck=dict(type="CSPNeXtPAFPN", in_channels=chans, out_channels=out, num_csp_blocks=blocks, expand_ratio=0.5, norm_cfg=bn, act_cfg=act),
        bbox_head=dict(
            type="RTMDetSepBNHead", num_classes=80, in_channels=out, stacked_convs=2, feat_channels=out,
            anchor_generator=dict(type="MlvlPointGenerator", offset=0, strides=[8, 16, 32]),
            bbox_coder=dict(type="DistancePointBBoxCoder"),
            loss_cls=dict(type="QualityFocalLoss", use_sigmoid=True, beta=2.0, loss_weight=1.0),
            loss_bbox=dict(type="GIoULoss", loss_weight=2.0), with_objectness=False, exp_on_reg=exp_on_reg,
            share_conv=True, pred_kernel_size=1, norm_cfg=bn, act_cfg=act,
        ),
        train_cfg=dict(assigner=dict(type="DynamicSoftLabelAssigner", topk=13), allowed_border=-1, pos_weight=-1, debug=False),
        test_cfg=dict(nms_pre=30000, min_bbox_size=0, score_thr=0.001, nms=dict(type="nms", iou_threshold=0.65), max_per_img=300),
    )  # fmt: skip
    return MODELS.build(ConfigDict(cfg))


@pytest.fixture(scope="module")
def mmdet_pair():
    """MMDetection's RTMDet-tiny (exp distances, so the IoUs and losses are substantial) with random weights,
    and lightdet's model loaded with them through the converter."""
    _import_mmdet()
    torch.manual_seed(0)
    reference = _mmdet_rtmdet("tiny", exp_on_reg=True)
    reference.init_weights()
    with torch.no_grad():  # spread the initial (all equal) scores and distances: no ties in the rankings
        for name, param in reference.bbox_head.named_parameters():
            if name.startswith(("rtm_cls", "rtm_reg")):
                param.normal_(std=0.05 if name.endswith("weight") else 0.5)
    state = reference.state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == mmdet_rtmdet_shapes("tiny")
    from hydra.utils import instantiate

    from lightdet.checkpoint import compose_model_config

    cfg = compose_model_config(get_preset("mmdet", ARCHS[0]), overrides=["model.bbox_head.exp_on_reg=true"])
    model = instantiate(cfg.model)
    converted, report, _ = convert("mmdet", ARCHS[0], {"state_dict": state}, target=model.state_dict())
    assert report.ok, report.summary()
    model.load_state_dict(converted)
    return reference, model


def _inputs() -> tuple[object, list[object]]:
    """Two 128 x 128 images (no padding either side) with three objects, as lightdet and MMDetection batches."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    from lightdet.structures import DetBatch, DetSample, ImageMeta

    g = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (2, 3, 128, 128), generator=g, dtype=torch.uint8)
    boxes = [
        torch.tensor([[10.0, 12.0, 70.0, 90.0], [60.0, 20.0, 120.0, 60.0]]),
        torch.tensor([[30.0, 40.0, 100.0, 110.0]]),
    ]
    labels = [torch.tensor([3, 17]), torch.tensor([56])]
    samples, mm_samples = [], []
    for i in range(2):
        meta = ImageMeta(i, f"{i}.jpg", (128, 128), (128, 128), (1.0, 1.0), False)
        samples.append(DetSample(image=images[i], boxes=boxes[i], labels=labels[i], ignore=None, meta=meta))
        mm = DetDataSample(
            metainfo=dict(
                img_shape=(128, 128),
                ori_shape=(128, 128),
                pad_shape=(128, 128),
                batch_input_shape=(128, 128),
                scale_factor=(1.0, 1.0),
            )
        )
        mm.gt_instances = InstanceData(bboxes=boxes[i], labels=labels[i])
        mm_samples.append(mm)
    return DetBatch.collate(samples), mm_samples


def _mmdet_images(batch: object) -> torch.Tensor:
    """MMDetection's normalised input: the RGB uint8 images as BGR, minus the BGR mean, over the BGR std."""
    bgr = batch.images.flip(1).float()
    mean, std = torch.tensor([103.53, 116.28, 123.675]), torch.tensor([57.375, 57.12, 58.395])
    return (bgr - mean[:, None, None]) / std[:, None, None]


def test_forward_matches_mmdetection(mmdet_pair):
    reference, model = mmdet_pair
    reference.eval(), model.eval()
    batch, _ = _inputs()
    with torch.no_grad():
        cls_scores, bbox_preds = reference._forward(_mmdet_images(batch))
        images, _ = model.preprocess(batch)
        out = model.bbox_head(model.extract_feat(images))
    for ref_cls, ref_box, logits, dist in zip(cls_scores, bbox_preds, out.logits, out.distances):
        torch.testing.assert_close(logits, ref_cls.permute(0, 2, 3, 1).flatten(1, 2), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(dist, ref_box.permute(0, 2, 3, 1).flatten(1, 2), rtol=1e-4, atol=1e-3)


def test_losses_match_mmdetection(mmdet_pair):
    reference, model = copy.deepcopy(mmdet_pair)  # training-mode BN updates its statistics
    reference.train(), model.train()
    batch, mm_samples = _inputs()
    ref = reference.loss(_mmdet_images(batch), mm_samples)
    ours = model.loss(batch)
    for key in ("loss_cls", "loss_bbox"):
        assert ours[key].item() == pytest.approx(sum(v.item() for v in ref[key]), rel=1e-4), key


def test_predictions_match_mmdetection(mmdet_pair):
    reference, model = mmdet_pair
    reference.eval(), model.eval()
    batch, mm_samples = _inputs()
    with torch.no_grad():
        ref = reference.predict(_mmdet_images(batch), mm_samples, rescale=False)
        ours = model.predict(batch)
    for r, o in zip(ref, ours):
        top = min(50, len(o.scores))
        torch.testing.assert_close(o.scores[:top], r.pred_instances.scores[:top], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(o.boxes[:top], r.pred_instances.bboxes[:top], rtol=1e-4, atol=1e-2)
        assert o.labels[:top].tolist() == r.pred_instances.labels[:top].tolist()

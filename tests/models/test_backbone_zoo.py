"""The backbone zoo: timm models (random init, or weights from a file / the Hugging Face cache, never a
download), a plain ViT with ViTDet's simple pyramid, torchvision classifiers by name, and PAFPN."""

from __future__ import annotations

import pickle

import pytest
import torch
from hydra.utils import instantiate
from model_builders import make_batch
from torch import nn

from lightdet.composition import compose_config
from lightdet.config import register_resolvers
from lightdet.models import PAFPN, SimpleFPN, TimmBackbone, TorchvisionBackbone

timm = pytest.importorskip("timm")

SMALL_TIMM = ["resnet10t", "convnext_atto", "mobilenetv3_small_050"]


def _model(model: str, *overrides: str) -> nn.Module:
    register_resolvers()
    torch.manual_seed(0)
    return instantiate(compose_config(None, [f"+model={model}", "+dataset.num_classes=3", *overrides]).model)


@pytest.mark.parametrize("model", ["faster_rcnn_small", "retinanet_small"])
@pytest.mark.parametrize("name", SMALL_TIMM)
def test_timm_backbones_train_and_predict_in_both_detectors(model: str, name: str):
    detector = _model(model, "model/backbone=timm", f"model.backbone.name={name}")
    assert isinstance(detector.backbone, TimmBackbone) and detector.backbone.strides == [4, 8, 16, 32]
    losses = detector.loss(make_batch())
    total = sum(v for k, v in losses.items() if k.startswith("loss"))
    assert torch.isfinite(total)
    total.backward()
    assert any(p.grad is not None for p in detector.backbone.parameters())
    detections = detector.eval().predict(make_batch())
    assert len(detections) == 3 and all(d.boxes.shape[1] == 4 for d in detections)


def test_timm_declares_what_it_returns_and_freezes_by_feature_index():
    backbone = TimmBackbone("resnet10t", frozen_stages=1, norm_eval=True).train()
    assert backbone.out_channels == [64, 128, 256, 512] and backbone.strides == [4, 8, 16, 32]
    outs = backbone(torch.zeros(1, 3, 64, 96))
    assert [tuple(o.shape[1:]) for o in outs] == [(64, 16, 24), (128, 8, 12), (256, 4, 6), (512, 2, 3)]
    frozen = {n.split(".")[0] for n, p in backbone.model.named_parameters() if not p.requires_grad}
    assert frozen == {"conv1", "bn1", "layer1"}  # feature 0 is the stem, feature 1 layer1
    assert all(p.requires_grad for p in backbone.model.layer2.parameters())
    assert not any(m.training for m in backbone.modules() if isinstance(m, nn.BatchNorm2d))
    picked = TimmBackbone("resnet10t", out_indices=(2, 4))
    assert picked.out_channels == [128, 512] and picked.strides == [8, 32]
    frozen_norms = TimmBackbone("resnet10t", norm="FrozenBN")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in frozen_norms.modules())


def test_pretrained_file_loads_with_weights_only(tmp_path):
    torch.manual_seed(1)
    source = timm.create_model("resnet10t", pretrained=False)
    path = tmp_path / "resnet10t.pth"
    torch.save({"state_dict": source.state_dict()}, path)
    backbone = TimmBackbone("resnet10t", weights=str(path))
    assert torch.equal(backbone.model.layer3[0].conv1.weight, source.layer3[0].conv1.weight)
    # a pickled object beyond tensors and containers is refused: the file is read with weights_only=True
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"state_dict": source.state_dict(), "extra": _Unpicklable()}, unsafe)
    with pytest.raises(pickle.UnpicklingError):
        TimmBackbone("resnet10t", weights=str(unsafe))


class _Unpicklable:
    """A custom class: torch.load(weights_only=True) does not unpickle it."""


def test_hf_cache_is_read_and_never_downloaded(tmp_path, monkeypatch):
    import huggingface_hub.constants
    from safetensors.torch import save_file

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="huggingface-cli download timm/resnet10t"):
        TimmBackbone("resnet10t", weights="hf_cache")
    # the cache layout: models--{org}--{name}/refs/main -> snapshots/{revision}/model.safetensors
    repo = tmp_path / "models--timm--resnet10t.c3_in1k"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    torch.manual_seed(2)
    source = timm.create_model("resnet10t", pretrained=False)
    save_file(source.state_dict(), str(repo / "snapshots" / "abc123" / "model.safetensors"))
    backbone = TimmBackbone("resnet10t", weights="hf_cache")
    assert torch.equal(backbone.model.conv1[0].weight, source.conv1[0].weight)


def test_plain_vit_with_the_simple_pyramid_in_faster_rcnn():
    detector = _model(
        "faster_rcnn", "model/backbone=vit_dinov2_small", "model.backbone.name=vit_tiny_patch16_224",
        "model/neck=simple_fpn", "model.neck.out_channels=32",
    )  # fmt: skip
    assert isinstance(detector.neck, SimpleFPN)
    assert detector.backbone.strides == [16] and detector.neck.strides == [4, 8, 16, 32, 64]
    losses = detector.loss(make_batch())
    assert all(torch.isfinite(v) for v in losses.values())
    assert len(detector.eval().predict(make_batch())) == 3


def test_simple_fpn_levels():
    neck = SimpleFPN([64], 16, 5, in_strides=[16])
    outs = neck([torch.randn(2, 64, 4, 6)])
    assert [tuple(o.shape) for o in outs] == [
        (2, 16, 16, 24),
        (2, 16, 8, 12),
        (2, 16, 4, 6),
        (2, 16, 2, 3),
        (2, 16, 1, 2),
    ]
    assert neck.strides == [4, 8, 16, 32, 64]


@pytest.mark.parametrize(
    ("name", "channels"),
    [
        ("efficientnet_b0", [24, 40, 112, 1280]),
        ("convnext_tiny", [96, 192, 384, 768]),
        ("mobilenet_v2", [24, 32, 96, 1280]),
    ],
)
def test_torchvision_backbones_by_name(name: str, channels: list[int]):
    with torch.device("meta"):
        backbone = TorchvisionBackbone(name)
    assert backbone.out_channels == channels and backbone.strides == [4, 8, 16, 32]
    assert [any(p.requires_grad for p in s.parameters()) for s in backbone.stages] == [
        False,
        True,
        True,
        True,
    ]


def test_torchvision_backbone_runs_and_checks_its_arguments(tmp_path):
    backbone = TorchvisionBackbone("efficientnet_b0", frozen_stages=-1, norm="GN").eval()
    outs = backbone(torch.zeros(1, 3, 64, 96))
    assert [tuple(o.shape[1:]) for o in outs] == [(24, 16, 24), (40, 8, 12), (112, 4, 6), (1280, 2, 3)]
    with pytest.raises(ValueError, match="own"):
        TorchvisionBackbone("convnext_tiny", norm="BN")
    with pytest.raises(ValueError, match="families"):
        TorchvisionBackbone("resnet50")
    import torchvision

    torch.manual_seed(3)
    source = torchvision.models.mobilenet_v3_small()
    torch.save(source.state_dict(), tmp_path / "mnv3.pth")
    loaded = TorchvisionBackbone("mobilenet_v3_small", weights=str(tmp_path / "mnv3.pth"))
    assert torch.equal(loaded.stages[0][0][0].weight, source.features[0][0].weight)


def test_pafpn_adds_a_bottom_up_path():
    channels = [8, 16, 32, 64]
    inputs = [torch.randn(1, c, 32 // 2**i, 32 // 2**i, requires_grad=True) for i, c in enumerate(channels)]
    neck = PAFPN(channels, 16, 5, in_strides=[4, 8, 16, 32])
    outs = neck(inputs)
    assert [tuple(o.shape) for o in outs] == [(1, 16, s, s) for s in (32, 16, 8, 4, 2)]
    assert neck.strides == [4, 8, 16, 32, 64]
    (grad,) = torch.autograd.grad(outs[3].sum(), inputs[0])  # the coarsest level sees the finest input
    assert grad.abs().sum() > 0
    on_input = PAFPN(channels, 16, 6, start_level=1, add_extra_convs="on_input", relu_before_extra_convs=True)
    outs = on_input(inputs)
    assert [o.shape[-1] for o in outs] == [16, 8, 4, 2, 1, 1] and on_input.strides == [
        8,
        16,
        32,
        64,
        128,
        256,
    ]
    assert on_input.extra_convs[0].conv.in_channels == 64


def test_pafpn_is_a_drop_in_neck_for_faster_rcnn():
    detector = _model("faster_rcnn_small", "model/neck=pafpn")
    assert isinstance(detector.neck, PAFPN) and detector.neck.strides == [8, 16, 32]
    assert torch.isfinite(sum(v for k, v in detector.loss(make_batch()).items() if k.startswith("loss")))

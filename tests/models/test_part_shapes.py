"""Parts declare their shape: backbones' and necks' ``out_channels``/``strides`` reach the config through
``${lightdet.out_channels:...}`` / ``${lightdet.strides:...}``, so any backbone plugs into any model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from model_builders import make_batch
from omegaconf import OmegaConf
from omegaconf.errors import InterpolationResolutionError
from torch import Tensor, nn

from lightdet.config import register_resolvers
from lightdet.models import FPN, MobileNetV3, ResNet, SingleStageDetector, TwoStageDetector
from lightdet.structures import Detections


class TinyBackbone(nn.Module):
    """A user's backbone, named by ``_target_`` only: three stages at strides 8, 16 and 32 (not ResNet's)."""

    built = 0

    def __init__(self, width: int = 8, weights: str | None = None) -> None:
        super().__init__()
        if weights is not None:
            raise RuntimeError("TinyBackbone has no weights to load")
        TinyBackbone.built += 1
        chans = [3, width, 2 * width, 4 * width]
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Conv2d(cin, cout, 3, stride=s, padding=1), nn.ReLU())
            for cin, cout, s in zip(chans, chans[1:], (8, 2, 2))
        )
        self.out_channels, self.strides = chans[1:], [8, 16, 32]

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs


class ShapelessBackbone(nn.Module):
    def forward(self, x: Tensor) -> list[Tensor]:
        return [x]


TINY = f"{__name__}.TinyBackbone"
# narrower heads and fewer RoIs for the CPU runs; the backbone, neck and pyramid stay as configured
LIGHTER_HEADS = {
    "faster_rcnn": ["model.roi_head.bbox_head.fc_out_channels=128", "model.roi_head.sampler.num=128",
                    "model.rpn_head.train_pre_nms_top_n=300", "model.rpn_head.train_post_nms_top_n=300"],
    "retinanet": ["model.bbox_head.stacked_convs=1"],
}  # fmt: skip


@pytest.fixture
def user_configs(tmp_path: Path) -> Path:
    """A user's config directory with ``model/backbone/tiny.yaml`` naming :class:`TinyBackbone`."""
    (tmp_path / "my_configs" / "model" / "backbone").mkdir(parents=True)
    (tmp_path / "my_configs" / "model" / "backbone" / "tiny.yaml").write_text(
        f"_target_: {TINY}\nwidth: 8\nweights: pretrained-on-something\n"
    )
    return tmp_path / "my_configs"


def _run_loss_and_predict(model: nn.Module) -> None:
    batch = make_batch()
    losses = model.train().loss(batch)
    assert all(torch.isfinite(v) for v in losses.values()), losses
    sum(v for k, v in losses.items() if k.startswith("loss")).backward()
    detections = model.eval().predict(batch)
    assert len(detections) == 3 and all(isinstance(d, Detections) for d in detections)
    assert all(((d.labels >= 0) & (d.labels < 3)).all() for d in detections)


def test_resnet_and_fpn_declare_their_shape():
    assert ResNet(18, out_indices=(1, 3)).strides == [8, 32]
    fpn = FPN([8, 16, 32], 8, 5, start_level=1, in_strides=[8, 16, 32])
    assert fpn.strides == [16, 32, 64, 128, 256]
    assert FPN([8, 16, 32, 64], 8, 5).strides == [4, 8, 16, 32, 64]  # default: ResNet's C2..C5
    with pytest.raises(ValueError, match="in_strides"):
        FPN([8, 16], 8, 2, in_strides=[8])


@pytest.mark.parametrize(("arch", "channels"), [("large", [24, 40, 112, 960]), ("small", [16, 24, 48, 576])])
def test_mobilenet_v3_stages(arch, channels):
    backbone = MobileNetV3(arch).eval()
    feats = backbone(torch.zeros(1, 3, 64, 96))
    assert backbone.out_channels == channels and backbone.strides == [4, 8, 16, 32]
    assert [tuple(f.shape[1:]) for f in feats] == [
        (c, 64 // s, 96 // s) for c, s in zip(channels, (4, 8, 16, 32))
    ]
    picked = MobileNetV3(arch, out_indices=(1, 3))
    assert picked.out_channels == channels[1::2] and picked.strides == [8, 32]
    assert len(picked(torch.zeros(1, 3, 64, 64))) == 2


def test_mobilenet_v3_freezing_and_norms():
    backbone = MobileNetV3(frozen_stages=2, norm_eval=True).train()
    trainable = [any(p.requires_grad for p in stage.parameters()) for stage in backbone.stages]
    assert trainable == [False, False, True, True]
    assert not any(m.training for m in backbone.modules() if isinstance(m, nn.BatchNorm2d))
    stem_only = MobileNetV3(frozen_stages=0, norm_eval=False).train()
    assert not any(p.requires_grad for p in stem_only.stages[0][0].parameters())
    assert all(p.requires_grad for p in stem_only.stages[0][1].parameters()) and stem_only.stages[1].training
    groups = [m.num_groups for m in MobileNetV3("small", norm="GN").modules() if isinstance(m, nn.GroupNorm)]
    assert groups and set(groups) == {8}
    for bad in ({"arch": "tiny"}, {"out_indices": (4,)}, {"frozen_stages": 5}, {"norm": "LN"}):
        with pytest.raises(ValueError, match="MobileNetV3"):
            MobileNetV3(**bad)
    with pytest.raises(ValueError, match="weights"):
        MobileNetV3(weights="NoSuch_Weights.V1")


def test_resolvers_read_the_built_part_without_its_weights():
    register_resolvers()
    cfg = OmegaConf.create(
        {
            "backbone": {"_target_": TINY, "width": 4, "weights": "would-fail"},
            "channels": "${lightdet.out_channels:${backbone}}",
            "strides": "${lightdet.strides:${backbone}}",
            "coarse": "${lightdet.strides:${backbone},16}",
        }
    )
    before = TinyBackbone.built
    assert (list(cfg.channels), list(cfg.strides), list(cfg.coarse)) == ([4, 8, 16], [8, 16, 32], [8, 16])
    assert list(cfg.channels) == [4, 8, 16] and TinyBackbone.built == before + 1  # built once per content
    cfg.backbone.width = 2
    assert list(cfg.channels) == [2, 4, 8] and TinyBackbone.built == before + 2


def test_a_part_without_a_declared_shape_is_named():
    register_resolvers()
    target = f"{__name__}.ShapelessBackbone"
    cfg = OmegaConf.create({"backbone": {"_target_": target}, "strides": "${lightdet.strides:${backbone}}"})
    with pytest.raises(InterpolationResolutionError, match=f"{target} declares no `strides`"):
        _ = cfg.strides


def test_the_neck_states_the_pyramid_strides_once(compose_cfg):
    cfg = compose_cfg(["model=faster_rcnn", "model.neck.start_level=1", "model.neck.num_outs=4"]).model
    assert list(cfg.neck.in_strides) == [4, 8, 16, 32]
    assert list(cfg.rpn_head.anchor_generator.strides) == [8, 16, 32, 64]
    assert list(cfg.roi_head.bbox_roi_extractor.strides) == [8, 16, 32]  # up to stride 32: P6 is the RPN's
    cfg = compose_cfg(
        ["model=retinanet", "model.backbone.out_indices=[2,3]", "model.neck.start_level=0"]
    ).model
    assert list(cfg.neck.in_channels) == [1024, 2048]
    assert list(cfg.bbox_head.anchor_generator.strides) == [16, 32, 64, 128, 256]


@pytest.mark.parametrize("name", ["faster_rcnn", "retinanet"])
def test_mobilenet_v3_plugs_into_a_model_without_a_neck_override(compose_cfg, name):
    cfg = compose_cfg(
        [
            f"model={name}",
            "model/backbone=mobilenet_v3_large",
            "dataset.classes=[a,b,c]",
            *LIGHTER_HEADS[name],
        ]
    )
    channels = [24, 40, 112, 960]
    assert list(cfg.model.neck.in_channels) == channels and list(cfg.model.neck.in_strides) == [4, 8, 16, 32]
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    assert isinstance(model.backbone, MobileNetV3) and model.neck.in_channels == channels
    _run_loss_and_predict(model)


@pytest.mark.parametrize(
    ("name", "kind"), [("faster_rcnn", TwoStageDetector), ("retinanet", SingleStageDetector)]
)
def test_a_user_backbone_plugs_into_a_model_without_a_neck_override(compose_cfg, user_configs, name, kind):
    cfg = compose_cfg([
        f"hydra.searchpath=[file://{user_configs}]", f"model={name}", "model/backbone=tiny",
        "dataset.classes=[a,b,c]", *LIGHTER_HEADS[name],
    ])  # fmt: skip
    pyramid = (
        cfg.model.rpn_head.anchor_generator if name == "faster_rcnn" else cfg.model.bbox_head.anchor_generator
    )
    assert list(cfg.model.neck.in_channels) == [8, 16, 32] and list(cfg.model.neck.in_strides) == [8, 16, 32]
    expected = [8, 16, 32, 64, 128] if name == "faster_rcnn" else [16, 32, 64, 128, 256]
    assert list(pyramid.strides) == expected
    if name == "faster_rcnn":
        assert list(cfg.model.roi_head.bbox_roi_extractor.strides) == [8, 16, 32]
    torch.manual_seed(0)
    model = instantiate(cfg.model, backbone={"weights": None})
    assert isinstance(model, kind) and isinstance(model.backbone, TinyBackbone)
    _run_loss_and_predict(model)

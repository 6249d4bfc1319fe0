"""The real-time DETR experiments compose with the published recipes (lyuwenyu/RT-DETR, Peterande/D-FINE),
checked key by key, and their parameter groups get the published learning rates and weight decays."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from lightdet.composition import compose_config
from lightdet.engine.optim import build_optimizer

RTDETR_SCALES = [480, 512, 544, 576, 608, 640, 640, 640, 672, 704, 736, 768, 800]
DFINE_SCALES = [480, 512, 544, 576, 608, 672, 704, 736, 768, 800]
STRONG = ["RandomPhotometricDistort", "RandomZoomOut", "RandomIoUCrop", "SanitizeBoundingBoxes", "RandomFlip",
          "Resize", "SanitizeBoundingBoxes"]

# experiment -> (model, epochs, switch epoch, backbone lr mult, bias decay mult, train scales)
RTDETR = {
    "rtdetr_r18vd_6x_coco": ("rtdetr_r18vd", 72, -1, 0.1, 0.0, RTDETR_SCALES),
    "rtdetr_r34vd_6x_coco": ("rtdetr_r34vd", 72, -1, 0.1, 0.0, RTDETR_SCALES),
    "rtdetr_r50vd_6x_coco": ("rtdetr_r50vd", 72, -1, 0.1, 0.0, RTDETR_SCALES),
    "rtdetr_r101vd_6x_coco": ("rtdetr_r101vd", 72, -1, 0.01, 1.0, RTDETR_SCALES),
    "rtdetrv2_r18vd_120e_coco": ("rtdetrv2_r18vd", 120, 117, 1.0, 1.0, None),
    "rtdetrv2_r34vd_120e_coco": ("rtdetrv2_r34vd", 120, 117, 0.5, 0.0, RTDETR_SCALES),
    "rtdetrv2_r50vd_6x_coco": ("rtdetrv2_r50vd", 72, -1, 0.1, 1.0, RTDETR_SCALES),
    "rtdetrv2_r101vd_6x_coco": ("rtdetrv2_r101vd", 72, -1, 0.01, 1.0, RTDETR_SCALES),
}
# experiment -> (model, epochs, switch epoch, backbone lr mult, bias decay mult, times 640 is repeated)
DFINE = {
    "dfine_n_coco": ("dfine_n", 130, 120, 0.5, 0.0, 20),
    "dfine_s_coco": ("dfine_s", 130, 120, 0.5, 0.0, 20),
    "dfine_m_coco": ("dfine_m", 130, 120, 0.1, 0.0, 6),
    "dfine_l_coco": ("dfine_l", 80, 72, 0.05, 1.0, 4),
    "dfine_x_coco": ("dfine_x", 80, 72, 0.01, 1.0, 4),
}


def compose(name: str) -> Any:
    return compose_config("train", [f"experiment={name}"])


def same_model(cfg: Any, model: str) -> bool:
    """The experiment's model is ``conf/model/<model>.yaml`` (plus its train scales)."""
    ours = OmegaConf.to_container(cfg.model, resolve=True)
    ours.pop("train_scales")
    reference = compose_config(None, [f"+model={model}", "+dataset.num_classes=80"]).model
    return ours == OmegaConf.to_container(reference, resolve=True)


def check_common(cfg: Any, name: str, epochs: int, switch: int, backbone: float, bias: float) -> None:
    """The values every real-time DETR recipe shares, and the ones given per experiment."""
    assert cfg.name == name
    assert cfg.model.decoder.num_classes == 80
    assert cfg.optimizer._target_ == "torch.optim.AdamW" and list(cfg.optimizer.betas) == [0.9, 0.999]
    assert [step._target_.rsplit(".", 1)[1] for step in cfg.dataset.pipeline.train[1:]] == STRONG
    photometric, zoom, crop, sanitise = cfg.dataset.pipeline.train[1:5]
    assert (photometric.p, zoom.fill, crop.prob, sanitise.min_size) == (0.5, 0, 0.8, 1)
    assert list(cfg.dataset.pipeline.img_scale) == [640, 640]
    assert [s._target_.rsplit(".", 1)[1] for s in cfg.dataset.pipeline.train_late[1:]] == STRONG[4:]
    assert cfg.trainer.gradient_clip_val == 0.1 and cfg.trainer.gradient_clip_algorithm == "norm"
    assert cfg.trainer.max_epochs == epochs and cfg.schedule.max_epochs == epochs
    assert cfg.schedule.warmup == "linear" and cfg.schedule.policy.milestones[0] > epochs  # never decays
    assert cfg.callbacks.ema.momentum == 1.0e-4  # decay 0.9999
    assert cfg.callbacks.pipeline_switch.epoch == switch
    assert cfg.module.paramwise.norm_decay_mult == 0.0
    assert cfg.module.paramwise.bias_decay_mult == bias
    assert cfg.module.paramwise.custom_keys.backbone.lr_mult == backbone


@pytest.mark.parametrize("name", sorted(RTDETR))
def test_rtdetr_recipe(name: str) -> None:
    model, epochs, switch, backbone, bias, scales = RTDETR[name]
    cfg = compose(name)
    check_common(cfg, name, epochs, switch, backbone, bias)
    assert same_model(cfg, model)
    assert cfg.optimizer.lr == 1.0e-4 and cfg.optimizer.weight_decay == 1.0e-4
    assert cfg.schedule.warmup_iters == 2000 and cfg.schedule.warmup_ratio == pytest.approx(1 / 2000)
    assert cfg.callbacks.ema.gamma == 2000
    assert (None if cfg.model.train_scales is None else list(cfg.model.train_scales)) == scales
    assert cfg.module.base_batch_size == 16


@pytest.mark.parametrize("name", sorted(DFINE))
def test_dfine_recipe(name: str) -> None:
    model, epochs, switch, backbone, bias, repeat = DFINE[name]
    cfg = compose(name)
    check_common(cfg, name, epochs, switch, backbone, bias)
    assert same_model(cfg, model)
    assert cfg.optimizer.lr == 2.5e-4 and cfg.optimizer.weight_decay == 1.25e-4
    assert cfg.schedule.warmup_iters == 500 and cfg.schedule.warmup_ratio == pytest.approx(1 / 500)
    assert cfg.callbacks.ema.gamma == 1000
    assert list(cfg.model.train_scales) == DFINE_SCALES + [640] * repeat
    assert cfg.module.base_batch_size == 64


def test_param_groups_get_the_published_lr_and_decay() -> None:
    """rtdetr_r18vd_6x_coco: backbone 1e-5 without decay on its BatchNorm; encoder/decoder norms and biases 0."""
    cfg = compose("rtdetr_r18vd_6x_coco")
    with torch.device("meta"):
        model = instantiate(cfg.model)
    optimizer = build_optimizer(instantiate(cfg.optimizer), model, instantiate(cfg.module.paramwise))
    by_name = {g["name"]: (g["lr"], g["weight_decay"]) for g in optimizer.param_groups}
    assert by_name["backbone:default"] == pytest.approx((1e-5, 1e-4))
    assert by_name["backbone:norm"] == pytest.approx((1e-5, 0.0))
    assert by_name["default"] == pytest.approx((1e-4, 1e-4))
    assert by_name["norm"] == pytest.approx((1e-4, 0.0)) and by_name["bias"] == pytest.approx((1e-4, 0.0))


def test_multiscale_batches_resize_in_training_only() -> None:
    """model.train_scales resizes the whole batch to one drawn side in loss(); predict keeps the input size."""
    cfg = compose_config(None, ["+model=rtdetr_small", "+dataset.num_classes=3", "+model.train_scales=[64,96]"])
    model = instantiate(cfg.model)
    images = torch.rand(2, 3, 128, 128)
    sides = {model.random_batch_scale(images).shape[-1] for _ in range(20)}
    assert sides == {64, 96}
    model.train_scales = None
    assert model.random_batch_scale(images) is images

"""conf/optimizer and conf/schedule: every yaml instantiates to a working optimizer / lr scheduler."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch.optim.lr_scheduler import LambdaLR

from lightdet.engine import build_param_groups, lr_factor

CONF = Path(__file__).resolve().parents[2] / "conf"

# name: (max_epochs, milestones)
SCHEDULES = {
    "1x": (12, [8, 11]),
    "2x": (24, [16, 22]),
    "3x": (36, [27, 33]),
    "20e": (20, [16, 19]),
    "cosine": (12, []),
}
# name: (class, lr, weight_decay)
OPTIMIZERS = {
    "sgd": (torch.optim.SGD, 0.02, 1e-4),
    "adam": (torch.optim.Adam, 1e-4, 1e-4),
    "adamw": (torch.optim.AdamW, 1e-4, 0.05),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_configs(name: str) -> None:
    cls, lr, weight_decay = OPTIMIZERS[name]
    factory = instantiate(OmegaConf.load(CONF / "optimizer" / f"{name}.yaml"))
    assert factory.func is cls
    assert factory.keywords["lr"] == lr and factory.keywords["weight_decay"] == weight_decay
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.LayerNorm(2))
    optimizer = factory(build_param_groups(model, base_lr=lr, weight_decay=weight_decay, norm_decay_mult=0.0))
    assert isinstance(optimizer, cls)
    if name == "sgd":
        assert optimizer.defaults["momentum"] == 0.9


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_configs(name: str) -> None:
    max_epochs, milestones = SCHEDULES[name]
    cfg = OmegaConf.load(CONF / "schedule" / f"{name}.yaml")
    assert cfg.max_epochs == max_epochs and list(cfg.milestones) == milestones
    factory = instantiate(cfg)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.02)
    scheduler = factory(optimizer, iters_per_epoch=100)
    assert isinstance(scheduler, LambdaLR)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.02 * 0.001)  # warmup starts at 0.001x
    kwargs = {k: v for k, v in OmegaConf.to_container(cfg).items() if not k.startswith("_")}
    if milestones:
        last = milestones[-1] * 100
        assert lr_factor(last - 1, iters_per_epoch=100, **kwargs) == pytest.approx(0.1)
        assert lr_factor(last, iters_per_epoch=100, **kwargs) == pytest.approx(0.01)
    else:
        assert lr_factor(max_epochs * 100, iters_per_epoch=100, **kwargs) == pytest.approx(cfg.min_lr_ratio)

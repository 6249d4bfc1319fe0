"""Parameter groups: which parameters get which lr and weight decay; linear lr scaling."""

from __future__ import annotations

import functools
from typing import Any

import pytest
import torch
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from lightdet.engine import ParamGroupRules, PrefixRule, build_optimizer, scale_lr


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), FrozenBatchNorm2d(4))
        self.backbone_extra = nn.Linear(4, 4)  # starts with "backbone" too: plain string prefixes
        self.neck = nn.Sequential(nn.Conv2d(4, 4, 1), nn.GroupNorm(2, 4))
        self.head = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2))
        self.head.shared = self.head[0]  # a shared module: its parameters are listed once
        self.stem = nn.Conv2d(3, 3, 1)
        self.stem.requires_grad_(False)


def build_param_groups(model: nn.Module, *, base_lr: float, weight_decay: float, **rules: Any) -> list[dict]:
    """The groups of an SGD optimizer with that lr and weight decay under ``ParamGroupRules(**rules)``."""
    sgd = functools.partial(torch.optim.SGD, lr=base_lr, weight_decay=weight_decay)
    return build_optimizer(sgd, model, ParamGroupRules(**rules)).param_groups


def _groups_by_param(groups: list[dict], model: nn.Module) -> dict[str, dict]:
    owner = {id(p): g for g in groups for p in g["params"]}
    return {name: owner[id(p)] for name, p in model.named_parameters() if id(p) in owner}


def test_norm_bias_default_groups() -> None:
    model = Toy()
    groups = build_param_groups(
        model, base_lr=0.02, weight_decay=1e-4, norm_decay_mult=0.0, bias_decay_mult=0.5
    )
    by = _groups_by_param(groups, model)
    assert {g["name"] for g in groups} == {"default", "norm", "bias"}
    norm = [f"{m}.1.{p}" for m in ("backbone", "neck", "head") for p in ("weight", "bias")]
    assert all(by[n]["name"] == "norm" and by[n]["weight_decay"] == 0.0 for n in norm)
    for n in ["backbone_extra.bias", "neck.0.bias", "head.0.bias", "head.2.bias"]:
        assert by[n]["name"] == "bias" and by[n]["weight_decay"] == pytest.approx(0.5e-4)
    for n in ["backbone.0.weight", "neck.0.weight", "head.0.weight", "head.2.weight"]:
        assert by[n]["name"] == "default" and by[n]["weight_decay"] == pytest.approx(1e-4)
    assert all(g["lr"] == 0.02 and g["lr_mult"] == 1.0 for g in groups)


def test_bias_lr_mult_applies_to_biases_outside_norms() -> None:
    model = Toy()
    groups = build_param_groups(model, base_lr=0.01, weight_decay=1e-4, bias_lr_mult=2.0, bias_decay_mult=0.0)
    by = _groups_by_param(groups, model)
    assert by["head.0.bias"]["lr"] == pytest.approx(0.02) and by["head.0.bias"]["lr_mult"] == 2.0
    assert by["head.0.bias"]["weight_decay"] == 0.0
    assert by["head.1.bias"]["lr"] == pytest.approx(0.01)  # a norm layer's bias keeps the base lr
    assert by["head.0.weight"]["lr"] == pytest.approx(0.01)


def test_frozen_and_shared_parameters() -> None:
    model = Toy()
    groups = build_param_groups(model, base_lr=0.1, weight_decay=0.0)
    params = [p for g in groups for p in g["params"]]
    assert len(params) == len({id(p) for p in params})  # head.shared == head.0 listed once
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for p in params} == trainable
    assert id(model.stem.weight) not in {id(p) for p in params}
    torch.optim.SGD(groups, lr=0.1)  # a valid optimizer input


def test_custom_keys_longest_prefix_wins_and_composes() -> None:
    model = Toy()
    custom = {
        "backbone": {"lr_mult": 0.1},
        "backbone.1": {"lr_mult": 0.5, "decay_mult": 2.0},
        "head.2": {"decay_mult": 0.0},
    }
    groups = build_param_groups(
        model, base_lr=0.02, weight_decay=1e-4, norm_decay_mult=0.0, custom_keys=custom
    )
    by = _groups_by_param(groups, model)
    assert by["backbone.0.weight"]["name"] == "backbone:default"
    assert by["backbone.0.weight"]["lr"] == pytest.approx(0.002) and by["backbone.0.weight"]["lr_mult"] == 0.1
    assert by["backbone_extra.weight"]["name"] == "backbone:default"
    assert by["backbone.1.weight"]["name"] == "backbone.1:norm"
    assert by["backbone.1.weight"]["lr"] == pytest.approx(0.01)
    assert by["backbone.1.weight"]["weight_decay"] == 0.0  # norm mult 0 x custom 2
    assert by["head.2.weight"]["name"] == "head.2:default" and by["head.2.weight"]["weight_decay"] == 0.0
    assert by["head.0.weight"]["name"] == "default"
    assert by["head.0.weight"]["weight_decay"] == pytest.approx(1e-4)


def test_rules_give_multipliers_and_take_typed_prefix_rules() -> None:
    model = Toy()
    as_yaml = ParamGroupRules(bias_lr_mult=2.0, custom_keys={"neck": {"decay_mult": 0.5}})
    typed = ParamGroupRules(bias_lr_mult=2.0, custom_keys={"neck": PrefixRule(decay_mult=0.5)})
    groups = typed(model)
    assert [(g["name"], g["lr_mult"], g["decay_mult"]) for g in groups] == [
        ("default", 1.0, 1.0), ("norm", 1.0, 1.0), ("bias", 2.0, 1.0),
        ("neck:default", 1.0, 0.5), ("neck:bias", 2.0, 0.5), ("neck:norm", 1.0, 0.5),
    ]  # fmt: skip
    assert [g["params"] for g in as_yaml(model)] == [g["params"] for g in groups]
    assert "lr" not in groups[0] and "weight_decay" not in groups[0]  # the optimizer's own values come later


def test_bad_custom_key_and_all_frozen() -> None:
    with pytest.raises(ValueError, match=r"custom_keys\['backbone'\]: unknown field\(s\) \['lr_mul'\]"):
        ParamGroupRules(custom_keys={"backbone": {"lr_mul": 0.1}})
    with pytest.raises(ValueError, match=r"custom_keys\['backbone'\]: unknown field\(s\) 0.1"):
        ParamGroupRules(custom_keys={"backbone": 0.1})
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        ParamGroupRules()(frozen)


class NoDefaultLr(torch.optim.Optimizer):
    def __init__(self, params: Any) -> None:
        super().__init__(params, {"momentum": 0.9})


def test_build_optimizer_reads_the_base_values_from_the_built_optimizer() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2))
    rules = ParamGroupRules(norm_decay_mult=0.0, bias_lr_mult=2.0)
    adamw = build_optimizer(functools.partial(torch.optim.AdamW, lr=1e-3), model, rules)  # AdamW's decay
    values = [(g["lr"], g["weight_decay"]) for g in adamw.param_groups]
    assert values == [(1e-3, 0.01), (2e-3, 0.01), (1e-3, 0.0)]
    scaled = build_optimizer(torch.optim.SGD, model, rules, scale=lambda lr: lr * 4)  # SGD's defaults
    values = [(g["lr"], g["weight_decay"]) for g in scaled.param_groups]
    assert values == [(4e-3, 0.0), (8e-3, 0.0), (4e-3, 0.0)]
    rprop = build_optimizer(functools.partial(torch.optim.Rprop, lr=0.1), model, rules)  # no weight decay
    assert [g["lr"] for g in rprop.param_groups] == [0.1, 0.2, 0.1]
    assert all("weight_decay" not in g for g in rprop.param_groups)
    with pytest.raises(TypeError, match="NoDefaultLr has no default lr"):
        build_optimizer(NoDefaultLr, model, rules)


def test_build_optimizer_takes_rules_of_your_own() -> None:
    """Any callable ``model -> groups`` with multipliers: here the head trains 10x faster."""

    def head_fast(model: nn.Module) -> list[dict]:
        head = set(model.head.parameters())
        rest = [p for p in model.parameters() if p not in head and p.requires_grad]
        return [{"params": rest, "lr_mult": 1.0, "decay_mult": 1.0}, {"params": list(head), "lr_mult": 10.0}]

    sgd = functools.partial(torch.optim.SGD, lr=0.01, weight_decay=1e-4)
    groups = build_optimizer(sgd, Toy(), head_fast).param_groups
    assert [(g["lr"], g["weight_decay"]) for g in groups] == [(0.01, 1e-4), (0.1, 1e-4)]


def test_scale_lr() -> None:
    assert scale_lr(0.02, 16) == pytest.approx(0.02)
    assert scale_lr(0.02, 8) == pytest.approx(0.01)
    assert scale_lr(0.01, 64, base_batch=32) == pytest.approx(0.02)
    with pytest.raises(ValueError, match="positive"):
        scale_lr(0.02, 0)

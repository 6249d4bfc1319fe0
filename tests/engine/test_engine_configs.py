"""conf/optimizer and conf/schedule: every yaml instantiates to a working optimizer / lr scheduler, and every
shipped schedule gives the same lr at every step as before its decay became a ``_target_`` policy."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.optim.lr_scheduler import LambdaLR

from lightdet.engine import CosineDecay, ParamGroupRules, StepDecay, build_optimizer, lr_factor

CONF = Path(__file__).resolve().parents[2] / "conf"

# name: (max_epochs, policy class, milestones)
SCHEDULES = {
    "1x": (12, StepDecay, [8, 11]),
    "2x": (24, StepDecay, [16, 22]),
    "3x": (36, StepDecay, [27, 33]),
    "20e": (20, StepDecay, [16, 19]),
    "finetune": (8, StepDecay, [7]),
    "cosine": (12, CosineDecay, None),
    "quickstart": (5, CosineDecay, None),
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
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.LayerNorm(2))
    optimizer = build_optimizer(factory, model, ParamGroupRules(norm_decay_mult=0.0))
    assert isinstance(optimizer, cls)
    assert optimizer.defaults["lr"] == lr and optimizer.defaults["weight_decay"] == weight_decay
    assert [(g["name"], g["lr"], g["weight_decay"]) for g in optimizer.param_groups] == [
        ("default", lr, weight_decay), ("bias", lr, weight_decay), ("norm", lr, 0.0),
    ]  # fmt: skip
    if name == "sgd":
        assert optimizer.defaults["momentum"] == 0.9


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_configs(name: str) -> None:
    max_epochs, policy_class, milestones = SCHEDULES[name]
    cfg = OmegaConf.load(CONF / "schedule" / f"{name}.yaml")
    factory = instantiate(cfg)
    assert factory.keywords["max_epochs"] == max_epochs == cfg.max_epochs
    policy = factory.keywords["policy"]
    assert type(policy) is policy_class
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.02)
    scheduler = factory(optimizer, iters_per_epoch=100)
    assert isinstance(scheduler, LambdaLR)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.02 * cfg.warmup_ratio)  # the warmup's start
    kwargs = {**factory.keywords, "iters_per_epoch": 100}
    if milestones is not None:
        assert list(policy.milestones) == milestones
        last, n = milestones[-1] * 100, len(milestones)
        assert lr_factor(last - 1, **kwargs) == pytest.approx(0.1 ** (n - 1))
        assert lr_factor(last, **kwargs) == pytest.approx(0.1**n)
    else:
        assert lr_factor(max_epochs * 100, **kwargs) == pytest.approx(cfg.policy.min_lr_ratio)


# The lr of one SGD group (initial lr 0.02) at every step of each shipped schedule, 61 optimizer steps per
# epoch (not a divisor of any milestone or warmup length), for max_epochs * 61 + 5 steps: the sha256 of
# the comma-joined float.hex() of every step's lr, and the lr at chosen steps (warmup, milestones, end).
# Produced by this file's _lr_curve with the code before the decay policies were `_target_` classes
# (commit 61254c8: `policy: step|cosine` strings in build_warmup_scheduler), so the refactor is proven to
# give bit-identical lrs. The experiments are those whose schedule differs from its group's file.
PINNED_CURVES: dict[str, tuple[str, dict[int, float]]] = {
    # RTMDet's flat-then-cosine, added later; its samples are the hand values: 0.02 x 1e-5 at step 0, 0.02 on
    # the flat part (to epoch 150), 0.02 x (0.05 + 0.95 x 0.5) = 0.0105 half-way down the cosine, 0.05x at the end
    "schedule=rtmdet_300e": (
        "02ed251a105123ece0088e4f0e0cef7fa213d33f9f65c9ac75031ac03430e8d3",
        {0: 2.0000000000000002e-07, 999: 0.0199800002, 1000: 0.02, 9150: 0.02, 13725: 0.0105,
         18299: 0.0010000005599524674},
    ),
    "schedule=1x": (
        "eba49f29ac37e62b2c28fc702e838e23bac3777e8a3c739e5381f2cb2dc12ff4",
        {0: 2e-05, 1: 5.996000000000001e-05, 250: 0.01001, 368: 0.01472528, 487: 0.019480519999999998,
         488: 0.001952048, 499: 0.001996004, 500: 0.002, 501: 0.002, 670: 0.002,
         671: 0.00020000000000000004, 731: 0.00020000000000000004, 732: 0.00020000000000000004,
         736: 0.00020000000000000004},
    ),
    "schedule=2x": (
        "22259ad00c367b9789053a9dc663ae6fca5762bb3076708a3d15519f0908f614",
        {0: 2e-05, 1: 5.996000000000001e-05, 250: 0.01001, 499: 0.01996004, 500: 0.02, 501: 0.02,
         734: 0.02, 975: 0.02, 976: 0.002, 1341: 0.002, 1342: 0.00020000000000000004,
         1463: 0.00020000000000000004, 1464: 0.00020000000000000004, 1468: 0.00020000000000000004},
    ),
    "schedule=3x": (
        "ab4fb1f05b7045455eeb525a4b114262fc3f7a844095725358c8987603814dab",
        {0: 2e-05, 1: 5.996000000000001e-05, 250: 0.01001, 499: 0.01996004, 500: 0.02, 501: 0.02,
         1100: 0.02, 1646: 0.02, 1647: 0.002, 2012: 0.002, 2013: 0.00020000000000000004,
         2195: 0.00020000000000000004, 2196: 0.00020000000000000004, 2200: 0.00020000000000000004},
    ),
    "schedule=20e": (
        "03621a8b1c0c758e2a613289cd85c56c44bc3fe1e1a4a0277107728056a6313c",
        {0: 2e-05, 1: 5.996000000000001e-05, 250: 0.01001, 499: 0.01996004, 500: 0.02, 501: 0.02,
         612: 0.02, 975: 0.02, 976: 0.002, 1158: 0.002, 1159: 0.00020000000000000004,
         1219: 0.00020000000000000004, 1220: 0.00020000000000000004, 1224: 0.00020000000000000004},
    ),
    "schedule=cosine": (
        "25e3ca55b6c2872ff8a7542bc2a59087576554646067bbed508ae447e18b75cb",
        {0: 2e-05, 1: 5.995972389228015e-05, 250: 0.007395067111619628, 368: 0.007299442918845783,
         499: 0.004587689941823587, 500: 0.004560810456712754, 501: 0.0045248466032962445,
         731: 9.209730482129253e-08, 732: 0.0, 736: 0.0},
    ),
    "schedule=finetune": (
        "06824cf091c535dbbb31bf44757ee7f27d5a9cb764ad27af57b389b890e7e6b5",
        {0: 0.0002, 1: 0.000398, 50: 0.0101, 99: 0.019802000000000004, 100: 0.02, 101: 0.02, 246: 0.02,
         426: 0.02, 427: 0.002, 487: 0.002, 488: 0.002, 492: 0.002},
    ),
    "schedule=quickstart": (
        "3ffe23a6cec30373f7312f694d8bcb27aa6dcaeb1defa7aeccf816691baf7511",
        {0: 2e-05, 1: 0.00041958898189492527, 25: 0.009846624024954755, 49: 0.018390656017284707,
         50: 0.018715823886198538, 51: 0.01866514111724014, 155: 0.009845095654815613,
         304: 0.00020052517183387936, 305: 0.0002, 309: 0.0002},
    ),
    "experiment=fcos_r50_fpn_gn-head_1x_coco": (
        "58b8e49cf1a685a78f35a5409633fb70e893e22001342b7ef10f0107b190130c",
        {0: 0.006666666666666666, 1: 0.006666666666666666, 250: 0.006666666666666666,
         368: 0.006666666666666666, 487: 0.006666666666666666, 488: 0.0006666666666666666,
         499: 0.0006666666666666666, 500: 0.002, 501: 0.002, 670: 0.002, 671: 0.00020000000000000004,
         731: 0.00020000000000000004, 732: 0.00020000000000000004, 736: 0.00020000000000000004},
    ),
    "experiment=faster_rcnn_small_finetune_shapes": (
        "0e1c55e7ec63a81aa83a7fa434b09cc11cd5d5014c91ae9c08b2887cf8467c74",
        {0: 0.0002, 1: 0.0005960000000000001, 25: 0.0101, 49: 0.019604, 50: 0.02, 51: 0.02, 94: 0.02,
         121: 0.02, 122: 0.002, 182: 0.002, 183: 0.002, 187: 0.002},
    ),
    "experiment=shapes_mask_rcnn": (
        "99b7be5027e0c23bcefcdacdd0dccdd72ec83d6fcb4987182d26d78b4560c83f",
        {0: 2e-05, 1: 0.00011989685159485592, 100: 0.007605822591841138, 155: 0.007632164279004434,
         199: 0.005509825145659524, 200: 0.005447230244029536, 201: 0.005357469242506743,
         304: 0.00020052517183387936, 305: 0.0002, 309: 0.0002},
    ),
}
ITERS_PER_EPOCH = 61


def _lr_curve(node: DictConfig) -> list[float]:
    """The lr used at each step (read before the scheduler steps) of the schedule ``node``."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.02)
    scheduler = instantiate(node)(optimizer, iters_per_epoch=ITERS_PER_EPOCH)
    lrs = []
    for _ in range(node.max_epochs * ITERS_PER_EPOCH + 5):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def _digest(lrs: list[float]) -> str:
    return hashlib.sha256(",".join(float.hex(lr) for lr in lrs).encode()).hexdigest()


def test_every_shipped_schedule_is_pinned() -> None:
    assert {k for k in PINNED_CURVES if k.startswith("schedule=")} == {
        f"schedule={p.stem}" for p in (CONF / "schedule").glob("*.yaml")
    }


@pytest.mark.parametrize("key", sorted(PINNED_CURVES))
def test_schedule_lr_curve_is_unchanged(key: str, compose_cfg: Callable[..., DictConfig]) -> None:
    group, name = key.split("=")
    node = OmegaConf.load(CONF / "schedule" / f"{name}.yaml") if group == "schedule" else None
    node = node if node is not None else compose_cfg([f"experiment={name}"]).schedule
    lrs = _lr_curve(node)
    digest, samples = PINNED_CURVES[key]
    assert {step: lrs[step] for step in samples} == samples
    assert _digest(lrs) == digest


def _snapshot() -> tuple[dict, object]:
    """The pinned snapshot (tests/fixtures/config_snapshot.json) and the script that resolves configs."""
    import importlib.util

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("config_snapshot", root / "scripts" / "config_snapshot.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)  # type: ignore[union-attr]
    return json.loads(script.SNAPSHOT.read_text()), script


POLICY_CLASSES = {"step": "lightdet.engine.StepDecay", "cosine": "lightdet.engine.CosineDecay"}


def _same(a: object, b: object) -> bool:
    """Equal values of equal types (0 and 0.0 differ), as the snapshot test compares them."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_moved_schedule_and_paramwise_keys_keep_their_values() -> None:
    """The keys that moved (tests/test_config_snapshot.py ALLOWED) hold the snapshot's values in every config:
    ``schedule.{milestones,gamma,min_lr_ratio}`` under ``schedule.policy`` (a step policy takes all three, a
    cosine policy only ``min_lr_ratio``); ``module.paramwise`` gained only its ``_target_``."""
    snapshot, script = _snapshot()
    moved = {"milestones", "gamma", "min_lr_ratio", "policy"}
    for key, old in snapshot.items():
        new = script.resolved(*key.split("=", 1))
        old_schedule, new_schedule = old["schedule"], new["schedule"]
        kept = {k: v for k, v in new_schedule.items() if k != "policy"}
        assert _same(kept, {k: v for k, v in old_schedule.items() if k not in moved}), key
        policy = {"_target_": POLICY_CLASSES[old_schedule["policy"]]}
        policy["min_lr_ratio"] = old_schedule["min_lr_ratio"]
        if old_schedule["policy"] == "step":
            policy |= {"milestones": old_schedule["milestones"], "gamma": old_schedule["gamma"]}
        assert _same(new_schedule["policy"], policy), key
        assert _same(new["module"]["scheduler"], new_schedule), key
        paramwise = {"_target_": "lightdet.engine.ParamGroupRules", **old["module"]["paramwise"]}
        assert _same(new["module"]["paramwise"], paramwise), key

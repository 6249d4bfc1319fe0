"""Per-iteration lr schedules: hand-computed values at chosen iterations; a policy of the user's own."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from lightdet.engine import CosineDecay, NoDecay, StepDecay, build_warmup_scheduler


def _lrs(scheduler_kwargs: dict, iters: int, base_lr: float = 0.02) -> list[float]:
    """The lr used at iterations 0..iters-1 (read before each scheduler step)."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [param], "lr": base_lr}], lr=base_lr)
    sched = build_warmup_scheduler(opt, **scheduler_kwargs)
    out = []
    for _ in range(iters):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_step_with_linear_warmup() -> None:
    kwargs = dict(policy=StepDecay([8, 11]), iters_per_epoch=10, max_epochs=12, warmup_iters=20)
    lrs = _lrs({**kwargs, "warmup_ratio": 0.001}, 120)
    assert lrs[0] == pytest.approx(0.02 * 0.001)
    assert lrs[5] == pytest.approx(0.02 * (0.001 + 0.999 * 5 / 20))  # MMDetection's linear warmup
    assert lrs[19] == pytest.approx(0.02 * (0.001 + 0.999 * 19 / 20))
    assert lrs[20] == pytest.approx(0.02) and lrs[79] == pytest.approx(0.02)
    assert lrs[80] == pytest.approx(0.002) and lrs[109] == pytest.approx(0.002)  # epoch 8 starts at it 80
    assert lrs[110] == pytest.approx(0.0002) and lrs[119] == pytest.approx(0.0002)


def test_warmup_multiplies_the_decayed_lr() -> None:
    """A milestone inside the warmup: warmup factor times gamma."""
    kwargs = dict(policy=StepDecay([1]), iters_per_epoch=10, max_epochs=4, warmup_iters=40, warmup_ratio=0.1)
    lrs = _lrs(kwargs, 50)
    assert lrs[15] == pytest.approx(0.02 * 0.1 * (0.1 + 0.9 * 15 / 40))
    assert lrs[45] == pytest.approx(0.002)


def test_constant_warmup_and_none() -> None:
    lrs = _lrs(dict(policy=NoDecay(), iters_per_epoch=5, max_epochs=2, warmup="constant", warmup_iters=3,
                    warmup_ratio=0.25), 10)  # fmt: skip
    assert lrs[:3] == pytest.approx([0.005] * 3) and lrs[3:] == pytest.approx([0.02] * 7)
    lrs = _lrs(dict(policy=StepDecay([1]), iters_per_epoch=5, max_epochs=2, warmup=None), 10)
    assert lrs[:5] == pytest.approx([0.02] * 5) and lrs[5:] == pytest.approx([0.002] * 5)


def test_cosine_reaches_min_lr_ratio() -> None:
    kwargs = dict(policy=CosineDecay(min_lr_ratio=0.05), iters_per_epoch=10, max_epochs=3, warmup_iters=5)
    lrs = _lrs(kwargs, 35)
    assert lrs[15] == pytest.approx(0.02 * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * 15 / 30))))
    warm, cosine = 0.001 + 0.999 * 2 / 5, 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * 2 / 30))
    assert lrs[2] == pytest.approx(0.02 * warm * cosine)
    assert lrs[30] == pytest.approx(0.02 * 0.05) and lrs[34] == pytest.approx(0.02 * 0.05)  # stays there
    assert all(a >= b for a, b in zip(lrs[5:], lrs[6:]))


def test_step_floor_and_group_multipliers() -> None:
    p1, p2 = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [p1], "lr": 0.02}, {"params": [p2], "lr": 0.002}], lr=0.02)
    policy = StepDecay(milestones=(1, 2, 3), min_lr_ratio=0.005)
    sched = build_warmup_scheduler(opt, policy=policy, iters_per_epoch=1, max_epochs=4, warmup=None)
    for _ in range(3):
        opt.step()
        sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.02 * 0.005, 0.002 * 0.005])


def test_state_dict_round_trip_resumes_the_schedule() -> None:
    kwargs = dict(policy=CosineDecay(), iters_per_epoch=4, max_epochs=3, warmup_iters=3)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = build_warmup_scheduler(opt, **kwargs)
    for _ in range(5):
        opt.step()
        sched.step()
    state = sched.state_dict()
    assert state["lr_lambdas"] == [{}]  # no policy object in a checkpoint: a resumed run uses its config's
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched2 = build_warmup_scheduler(opt2, **kwargs)
    sched2.load_state_dict(state)
    opt2.param_groups[0]["lr"] = sched2.get_last_lr()[0]
    assert sched2.last_epoch == 5 and opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(policy="step"), TypeError, "policy='step': expected a decay policy object"),
        (dict(warmup="exp"), ValueError, "warmup='exp'"),
        (dict(iters_per_epoch=0), ValueError, "iters_per_epoch=0"),
        (dict(warmup_ratio=0.0), ValueError, "warmup_ratio"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type[Exception], match: str) -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(error, match=match):
        build_warmup_scheduler(opt, **{"policy": NoDecay(), "iters_per_epoch": 2, "max_epochs": 2, **kwargs})


def test_policies_check_their_own_arguments() -> None:
    with pytest.raises(ValueError, match="increasing"):
        StepDecay(milestones=(11, 8))
    with pytest.raises(ValueError, match="min_lr_ratio=2.0"):
        StepDecay(milestones=(8,), min_lr_ratio=2.0)
    with pytest.raises(ValueError, match="min_lr_ratio=-0.1"):
        CosineDecay(min_lr_ratio=-0.1)
    assert StepDecay(milestones=[8, 11]).milestones == (8, 11)


@dataclass
class ExponentialDecay:
    """A policy the package does not ship: the lr times ``gamma`` per epoch, continuously."""

    gamma: float = 0.5

    def __call__(self, it: int, *, iters_per_epoch: int, max_epochs: int) -> float:
        return self.gamma ** (it / iters_per_epoch)


def test_a_policy_of_your_own_plugs_in_by_target(compose_cfg: Callable[..., DictConfig]) -> None:
    """Named in ``schedule.policy._target_`` on the command line; the warmup composes with it."""
    policy = f"{{_target_: {__name__}.ExponentialDecay, gamma: 0.25}}"
    cfg = compose_cfg(
        ["schedule=1x", "schedule.warmup_iters=4", "~schedule.policy", f"+schedule.policy={policy}"]
    )
    factory = instantiate(cfg.schedule, _convert_="all")
    assert factory.keywords["policy"] == ExponentialDecay(gamma=0.25)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.02)
    scheduler = factory(optimizer, iters_per_epoch=2)
    lrs = []
    for _ in range(8):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    warm = [0.001 + 0.999 * it / 4 for it in range(4)] + [1.0] * 4
    assert lrs == pytest.approx([0.02 * w * 0.25 ** (it / 2) for it, w in enumerate(warm)])

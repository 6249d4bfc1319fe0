"""Per-iteration lr schedules: hand-computed values at chosen iterations."""

from __future__ import annotations

import math

import pytest
import torch

from lightdet.engine import build_warmup_scheduler


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
    lrs = _lrs(dict(iters_per_epoch=10, max_epochs=12, warmup_iters=20, warmup_ratio=0.001), 120)
    assert lrs[0] == pytest.approx(0.02 * 0.001)
    assert lrs[5] == pytest.approx(0.02 * (0.001 + 0.999 * 5 / 20))  # MMDetection's linear warmup
    assert lrs[19] == pytest.approx(0.02 * (0.001 + 0.999 * 19 / 20))
    assert lrs[20] == pytest.approx(0.02) and lrs[79] == pytest.approx(0.02)
    assert lrs[80] == pytest.approx(0.002) and lrs[109] == pytest.approx(0.002)  # epoch 8 starts at it 80
    assert lrs[110] == pytest.approx(0.0002) and lrs[119] == pytest.approx(0.0002)


def test_warmup_multiplies_the_decayed_lr() -> None:
    """A milestone inside the warmup: warmup factor times gamma."""
    lrs = _lrs(dict(iters_per_epoch=10, max_epochs=4, milestones=(1,), warmup_iters=40, warmup_ratio=0.1), 50)
    assert lrs[15] == pytest.approx(0.02 * 0.1 * (0.1 + 0.9 * 15 / 40))
    assert lrs[45] == pytest.approx(0.002)


def test_constant_warmup_and_none() -> None:
    lrs = _lrs(dict(iters_per_epoch=5, max_epochs=2, policy="constant", warmup="constant", warmup_iters=3,
                    warmup_ratio=0.25), 10)  # fmt: skip
    assert lrs[:3] == pytest.approx([0.005] * 3) and lrs[3:] == pytest.approx([0.02] * 7)
    lrs = _lrs(dict(iters_per_epoch=5, max_epochs=2, policy="step", milestones=(1,), warmup=None), 10)
    assert lrs[:5] == pytest.approx([0.02] * 5) and lrs[5:] == pytest.approx([0.002] * 5)


def test_cosine_reaches_min_lr_ratio() -> None:
    kwargs = dict(iters_per_epoch=10, max_epochs=3, policy="cosine", warmup_iters=5, min_lr_ratio=0.05)
    lrs = _lrs(kwargs, 35)
    assert lrs[15] == pytest.approx(0.02 * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * 15 / 30))))
    warm, cosine = 0.001 + 0.999 * 2 / 5, 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * 2 / 30))
    assert lrs[2] == pytest.approx(0.02 * warm * cosine)
    assert lrs[30] == pytest.approx(0.02 * 0.05) and lrs[34] == pytest.approx(0.02 * 0.05)  # stays there
    assert all(a >= b for a, b in zip(lrs[5:], lrs[6:]))


def test_step_floor_and_group_multipliers() -> None:
    p1, p2 = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [p1], "lr": 0.02}, {"params": [p2], "lr": 0.002}], lr=0.02)
    sched = build_warmup_scheduler(opt, iters_per_epoch=1, max_epochs=4, milestones=(1, 2, 3), warmup=None,
                                   min_lr_ratio=0.005)  # fmt: skip
    for _ in range(3):
        opt.step()
        sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.02 * 0.005, 0.002 * 0.005])


def test_state_dict_round_trip_resumes_the_schedule() -> None:
    kwargs = dict(iters_per_epoch=4, max_epochs=3, policy="cosine", warmup_iters=3)
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = build_warmup_scheduler(opt, **kwargs)
    for _ in range(5):
        opt.step()
        sched.step()
    state = sched.state_dict()
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched2 = build_warmup_scheduler(opt2, **kwargs)
    sched2.load_state_dict(state)
    opt2.param_groups[0]["lr"] = sched2.get_last_lr()[0]
    assert sched2.last_epoch == 5 and opt2.param_groups[0]["lr"] == pytest.approx(opt.param_groups[0]["lr"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(policy="poly"), "policy='poly'"),
        (dict(warmup="exp"), "warmup='exp'"),
        (dict(milestones=(11, 8)), "increasing"),
        (dict(iters_per_epoch=0), "iters_per_epoch=0"),
        (dict(warmup_ratio=0.0), "warmup_ratio"),
        (dict(min_lr_ratio=2.0), "min_lr_ratio"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match=match):
        build_warmup_scheduler(opt, **{"iters_per_epoch": 2, "max_epochs": 2, **kwargs})

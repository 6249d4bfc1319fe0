"""Per-iteration learning-rate schedules: a warmup by iterations times a decay policy by epochs.

A decay policy is any callable ``policy(it, *, iters_per_epoch, max_epochs) -> float``: the factor of each
group's initial lr at iteration ``it`` (0-based, the optimizer steps taken so far). It declares its own
parameters in its constructor and is named by ``_target_`` in ``schedule.policy``, so a class of your own
plugs in like the ones here. :func:`build_warmup_scheduler` multiplies it by a warmup factor
(``warmup(it) * policy(it)``) and steps it once per iteration. The factors multiply each group's initial
lr, so per-group multipliers (``lr_mult``) are kept.

* :class:`StepDecay`: ``max(gamma ** (number of milestones reached), min_lr_ratio)``; a milestone ``m``
  (epochs) is reached at iteration ``m * iters_per_epoch``, i.e. the lr drops at the start of epoch ``m``
  (0-based).
* :class:`CosineDecay`: from 1 down to ``min_lr_ratio`` over ``max_epochs * iters_per_epoch`` iterations.
* :class:`NoDecay`: 1.
* warmup ``linear``: ``ratio + (1 - ratio) * it / warmup_iters`` for ``it < warmup_iters`` (MMDetection's
  formula); ``constant``: ``ratio`` for ``it < warmup_iters``; None: no warmup.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal, Protocol

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["CosineDecay", "DecayPolicy", "NoDecay", "StepDecay", "build_warmup_scheduler", "lr_factor"]

Warmup = Literal["linear", "constant"] | None


class DecayPolicy(Protocol):
    """The lr factor (relative to each group's initial lr) at iteration ``it`` of a run of that length."""

    def __call__(self, it: int, *, iters_per_epoch: int, max_epochs: int) -> float: ...


def _check_ratio(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}={value}: expected a value in [0, 1]")


@dataclass
class StepDecay:
    """Multiplies the lr by ``gamma`` at the start of each epoch in ``milestones``, never below the floor.

    Args:
        milestones: 0-based epochs, increasing: ``[8, 11]`` trains 8 epochs at 1x, 3 at ``gamma``, then
            ``gamma ** 2``.
        gamma: the decay per milestone.
        min_lr_ratio: the floor, relative to the initial lr.
    """

    milestones: Sequence[int]
    gamma: float = 0.1
    min_lr_ratio: float = 0.0

    def __post_init__(self) -> None:
        self.milestones = tuple(int(m) for m in self.milestones)
        if list(self.milestones) != sorted(self.milestones) or any(m < 0 for m in self.milestones):
            raise ValueError(
                f"milestones={list(self.milestones)}: expected non-negative epochs in increasing order"
            )
        _check_ratio("min_lr_ratio", self.min_lr_ratio)
        self.gamma, self.min_lr_ratio = float(self.gamma), float(self.min_lr_ratio)

    def __call__(self, it: int, *, iters_per_epoch: int, max_epochs: int) -> float:
        reached = sum(it >= m * iters_per_epoch for m in self.milestones)
        return max(self.gamma**reached, self.min_lr_ratio)


@dataclass
class CosineDecay:
    """Half a cosine, every iteration, from 1 to ``min_lr_ratio`` at the end of ``max_epochs``; flat after.

    Args:
        min_lr_ratio: the end value, relative to the initial lr.
    """

    min_lr_ratio: float = 0.0

    def __post_init__(self) -> None:
        _check_ratio("min_lr_ratio", self.min_lr_ratio)
        self.min_lr_ratio = float(self.min_lr_ratio)

    def __call__(self, it: int, *, iters_per_epoch: int, max_epochs: int) -> float:
        total = iters_per_epoch * max_epochs
        progress = min(it, total) / total
        return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class NoDecay:
    """A constant lr (after the warmup)."""

    def __call__(self, it: int, *, iters_per_epoch: int, max_epochs: int) -> float:
        return 1.0


def _warmup_factor(it: int, *, warmup: Warmup, warmup_iters: int, warmup_ratio: float) -> float:
    if warmup is None or it >= warmup_iters:
        return 1.0
    if warmup == "linear":
        return warmup_ratio + (1.0 - warmup_ratio) * it / warmup_iters
    return warmup_ratio


def lr_factor(
    it: int,
    *,
    policy: DecayPolicy,
    iters_per_epoch: int,
    max_epochs: int,
    warmup: Warmup = "linear",
    warmup_iters: int = 500,
    warmup_ratio: float = 0.001,
) -> float:
    """The lr factor at iteration ``it`` (module docstring); arguments as :func:`build_warmup_scheduler`."""
    regular = policy(it, iters_per_epoch=iters_per_epoch, max_epochs=max_epochs)
    return regular * _warmup_factor(it, warmup=warmup, warmup_iters=warmup_iters, warmup_ratio=warmup_ratio)


def _check_args(
    *, policy: object, iters_per_epoch: int, max_epochs: int, warmup: str | None, warmup_iters: int,
    warmup_ratio: float,
) -> None:  # fmt: skip
    if not callable(policy):
        raise TypeError(
            f"policy={policy!r}: expected a decay policy object, e.g. StepDecay(milestones=[8, 11]) "
            "(in a schedule yaml: a `policy:` node with `_target_: lightdet.engine.StepDecay`)"
        )
    if iters_per_epoch < 1 or max_epochs < 1:
        raise ValueError(f"iters_per_epoch={iters_per_epoch} and max_epochs={max_epochs} must be >= 1")
    if warmup not in ("linear", "constant", None):
        raise ValueError(f"warmup={warmup!r}: expected 'linear', 'constant' or None")
    if warmup is not None and (warmup_iters < 1 or not 0.0 < warmup_ratio <= 1.0):
        raise ValueError(
            f"warmup_iters={warmup_iters} must be >= 1 and warmup_ratio={warmup_ratio} in (0, 1]"
        )


def build_warmup_scheduler(
    optimizer: Optimizer,
    *,
    policy: DecayPolicy,
    iters_per_epoch: int,
    max_epochs: int,
    warmup: Warmup = "linear",
    warmup_iters: int = 500,
    warmup_ratio: float = 0.001,
) -> LambdaLR:
    """A ``LambdaLR`` to be stepped after every optimizer step (Lightning ``interval="step"``).

    Args:
        optimizer: its groups' current lrs are the base lrs the factors multiply.
        policy: the decay after (and during) the warmup: :class:`StepDecay`, :class:`CosineDecay`,
            :class:`NoDecay` or any :class:`DecayPolicy`.
        iters_per_epoch: optimizer steps per epoch (the policy converts its epochs with it).
        max_epochs: the schedule's length, passed to the policy.
        warmup: ``"linear"``, ``"constant"`` or None (no warmup).
        warmup_iters: warmup length in iterations.
        warmup_ratio: the warmup's starting factor.
    """
    _check_args(
        policy=policy, iters_per_epoch=iters_per_epoch, max_epochs=max_epochs, warmup=warmup,
        warmup_iters=warmup_iters, warmup_ratio=warmup_ratio,
    )  # fmt: skip
    # A partial, not a closure or the policy itself: LambdaLR's state dict stores a callable object's
    # __dict__ (a partial's is empty), so checkpoints carry no policy and resume with the configured one.
    factor: Callable[[int], float] = partial(
        lr_factor,
        policy=policy,
        iters_per_epoch=int(iters_per_epoch),
        max_epochs=int(max_epochs),
        warmup=warmup,
        warmup_iters=int(warmup_iters),
        warmup_ratio=float(warmup_ratio),
    )
    return LambdaLR(optimizer, factor)

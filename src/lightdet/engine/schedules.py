"""Per-iteration learning-rate schedules: warmup by iterations, then step / cosine / constant by epochs.

Every schedule is a factor of each group's initial lr, so per-group multipliers (``lr_mult``) are kept.
The factor at iteration ``it`` (0-based, the optimizer steps taken so far) is ``warmup(it) * regular(it)``:

* ``step``: ``max(gamma ** (number of milestones reached), min_lr_ratio)``; a milestone ``m`` (epochs) is
  reached at iteration ``m * iters_per_epoch``, i.e. the lr drops at the start of epoch ``m`` (0-based).
* ``cosine``: from 1 down to ``min_lr_ratio`` over ``max_epochs * iters_per_epoch`` iterations.
* ``constant``: 1.
* warmup ``linear``: ``ratio + (1 - ratio) * it / warmup_iters`` for ``it < warmup_iters`` (MMDetection's
  formula); ``constant``: ``ratio`` for ``it < warmup_iters``; None: no warmup.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Literal

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

__all__ = ["build_warmup_scheduler", "lr_factor"]

Policy = Literal["step", "cosine", "constant"]
Warmup = Literal["linear", "constant"] | None


def _regular_factor(
    it: int,
    *,
    policy: str,
    total_iters: int,
    milestone_iters: Sequence[int],
    gamma: float,
    min_lr_ratio: float,
) -> float:
    if policy == "step":
        reached = sum(it >= m for m in milestone_iters)
        return max(gamma**reached, min_lr_ratio)
    if policy == "cosine":
        progress = min(it, total_iters) / total_iters
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return 1.0


def _warmup_factor(it: int, *, warmup: str | None, warmup_iters: int, warmup_ratio: float) -> float:
    if warmup is None or it >= warmup_iters:
        return 1.0
    if warmup == "linear":
        return warmup_ratio + (1.0 - warmup_ratio) * it / warmup_iters
    return warmup_ratio


def lr_factor(
    it: int,
    *,
    iters_per_epoch: int,
    max_epochs: int,
    policy: Policy = "step",
    milestones: Sequence[int] = (8, 11),
    gamma: float = 0.1,
    warmup_iters: int = 500,
    warmup_ratio: float = 0.001,
    warmup: Warmup = "linear",
    min_lr_ratio: float = 0.0,
) -> float:
    """The lr factor at iteration ``it`` (module docstring); arguments as :func:`build_warmup_scheduler`."""
    regular = _regular_factor(
        it,
        policy=policy,
        total_iters=max(1, iters_per_epoch * max_epochs),
        milestone_iters=[int(m) * iters_per_epoch for m in milestones],
        gamma=gamma,
        min_lr_ratio=min_lr_ratio,
    )
    return regular * _warmup_factor(it, warmup=warmup, warmup_iters=warmup_iters, warmup_ratio=warmup_ratio)


def _check_args(
    *, iters_per_epoch: int, max_epochs: int, policy: str, milestones: Sequence[int], warmup: str | None,
    warmup_iters: int, warmup_ratio: float, min_lr_ratio: float,
) -> None:  # fmt: skip
    if iters_per_epoch < 1 or max_epochs < 1:
        raise ValueError(f"iters_per_epoch={iters_per_epoch} and max_epochs={max_epochs} must be >= 1")
    if policy not in ("step", "cosine", "constant"):
        raise ValueError(f"policy={policy!r}: expected 'step', 'cosine' or 'constant'")
    if warmup not in ("linear", "constant", None):
        raise ValueError(f"warmup={warmup!r}: expected 'linear', 'constant' or None")
    if list(milestones) != sorted(milestones) or any(m < 0 for m in milestones):
        raise ValueError(f"milestones={list(milestones)}: expected non-negative epochs in increasing order")
    if warmup is not None and (warmup_iters < 1 or not 0.0 < warmup_ratio <= 1.0):
        raise ValueError(
            f"warmup_iters={warmup_iters} must be >= 1 and warmup_ratio={warmup_ratio} in (0, 1]"
        )
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio={min_lr_ratio}: expected a value in [0, 1]")


def build_warmup_scheduler(
    optimizer: Optimizer,
    *,
    iters_per_epoch: int,
    max_epochs: int,
    policy: Policy = "step",
    milestones: Sequence[int] = (8, 11),
    gamma: float = 0.1,
    warmup_iters: int = 500,
    warmup_ratio: float = 0.001,
    warmup: Warmup = "linear",
    min_lr_ratio: float = 0.0,
) -> LambdaLR:
    """A ``LambdaLR`` to be stepped after every optimizer step (Lightning ``interval="step"``).

    Args:
        optimizer: its groups' current lrs are the base lrs the factors multiply.
        iters_per_epoch: optimizer steps per epoch (converts ``milestones`` and ``max_epochs``).
        max_epochs: the schedule's length; cosine reaches ``min_lr_ratio`` at its end.
        policy: ``"step"``, ``"cosine"`` or ``"constant"``.
        milestones: epochs at whose start the lr is multiplied by ``gamma`` (``step`` only).
        gamma: the step decay.
        warmup_iters: warmup length in iterations.
        warmup_ratio: the warmup's starting factor.
        warmup: ``"linear"``, ``"constant"`` or None (no warmup).
        min_lr_ratio: the floor of ``step`` and the end value of ``cosine``, relative to the base lr.
    """
    _check_args(
        iters_per_epoch=iters_per_epoch, max_epochs=max_epochs, policy=policy, milestones=milestones,
        warmup=warmup, warmup_iters=warmup_iters, warmup_ratio=warmup_ratio, min_lr_ratio=min_lr_ratio,
    )  # fmt: skip
    factor: Callable[[int], float] = partial(
        lr_factor,
        iters_per_epoch=int(iters_per_epoch),
        max_epochs=int(max_epochs),
        policy=policy,
        milestones=tuple(int(m) for m in milestones),
        gamma=float(gamma),
        warmup_iters=int(warmup_iters),
        warmup_ratio=float(warmup_ratio),
        warmup=warmup,
        min_lr_ratio=float(min_lr_ratio),
    )
    return LambdaLR(optimizer, factor)

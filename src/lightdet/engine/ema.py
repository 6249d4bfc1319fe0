"""An exponential moving average (EMA) of the model's weights, as a Lightning callback.

The average is updated after every optimizer step, evaluated in validation and test, and what the
checkpoints' ``state_dict`` holds, so ``lightdet-test``, ``lightdet-infer`` and ``load_from`` use it.
The training weights travel in the same checkpoint under :data:`TRAIN_STATE_KEY`; resuming puts them
back into the model and the average back into the callback (MMEngine's ``EMAHook`` does the same swap).

Momentum (MMDetection's ``ExpMomentumEMA``): after optimizer step ``t`` (1-based),

    m(t) = (1 - momentum) * exp(-t / gamma) + momentum
    ema  = (1 - m(t)) * ema + m(t) * weights

so early on ``m`` is close to 1 and the average follows the fast-changing weights (a warmup), then
``m`` decays to ``momentum`` with time constant ``gamma`` steps. ``gamma=None`` is a plain EMA with a
constant momentum (``decay = 1 - momentum``). Every floating-point entry of the state dict is averaged,
BatchNorm running statistics included; integer buffers (``num_batches_tracked``) are copied.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor

__all__ = ["EMA", "TRAIN_STATE_KEY", "ema_momentum"]

#: Checkpoint key of the training (non-averaged) weights; ``state_dict`` holds the average.
TRAIN_STATE_KEY = "ema_train_state_dict"


def ema_momentum(step: int, momentum: float, gamma: float | None) -> float:
    """The weight of the current weights in the average after optimizer step ``step`` (1-based)."""
    if gamma is None:
        return momentum
    return (1.0 - momentum) * math.exp(-step / gamma) + momentum


class EMA(Callback):
    """Keeps an exponential moving average of the LightningModule's weights.

    Args:
        momentum: the weight of the current weights in the average once warmed up (MMDetection's
            YOLOX/RTMDet use 0.0002; ``1 - decay`` in timm's terms).
        gamma: warmup time constant in optimizer steps (see the module docstring); None: no warmup.
        validate_with_ema: swap the average in for validation and test (and out again after).

    Attributes:
        ema_state: ``{state_dict key: tensor}``, the average (None before training starts).
    """

    def __init__(self, momentum: float = 0.0002, gamma: float | None = 2000.0, validate_with_ema: bool = True):
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"EMA momentum must be in (0, 1], got {momentum}")
        if gamma is not None and gamma <= 0:
            raise ValueError(f"EMA gamma must be positive or None, got {gamma}")
        self.momentum = momentum
        self.gamma = gamma
        self.validate_with_ema = validate_with_ema
        self.ema_state: dict[str, Tensor] | None = None
        self._backup: dict[str, Tensor] | None = None
        self._last_step = -1

    @property
    def state_key(self) -> str:
        return self._generate_state_key(momentum=self.momentum, gamma=self.gamma)

    # -- updates --------------------------------------------------------------------------------------
    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        live = pl_module.state_dict()
        if self.ema_state is None:  # a fresh run, or a checkpoint written without EMA
            self.ema_state = {k: v.detach().clone() for k, v in live.items()}
        else:  # resumed: the average was restored on the CPU before the model moved to its device
            self.ema_state = {k: v.to(live[k].device) for k, v in self.ema_state.items()}
        self._last_step = trainer.global_step

    @torch.no_grad()
    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step == self._last_step:  # gradient accumulation: no optimizer step yet
            return
        self._last_step = trainer.global_step
        assert self.ema_state is not None
        m = ema_momentum(trainer.global_step, self.momentum, self.gamma)
        averaged, current = [], []
        for key, value in pl_module.state_dict().items():
            if value.is_floating_point():
                averaged.append(self.ema_state[key])
                current.append(value.detach().to(self.ema_state[key].dtype))
            else:
                self.ema_state[key].copy_(value)
        if averaged:
            torch._foreach_lerp_(averaged, current, m)  # ema += m * (weights - ema)

    # -- evaluation with the average ------------------------------------------------------------------
    def _swap_in(self, pl_module: L.LightningModule) -> None:
        if not self.validate_with_ema or self.ema_state is None or self._backup is not None:
            return
        live = pl_module.state_dict()
        self._backup = {k: v.detach().clone() for k, v in live.items()}
        with torch.no_grad():
            for key, value in live.items():
                value.copy_(self.ema_state[key])

    def _swap_out(self, pl_module: L.LightningModule) -> None:
        if self._backup is None:
            return
        with torch.no_grad():
            for key, value in pl_module.state_dict().items():
                value.copy_(self._backup[key])
        self._backup = None

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._swap_in(pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._swap_out(pl_module)  # before ModelCheckpoint saves (Lightning runs checkpoint callbacks last)

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._swap_in(pl_module)

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._swap_out(pl_module)

    # -- checkpoints ----------------------------------------------------------------------------------
    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self.ema_state is None:
            return
        # Saved mid-validation, the model holds the average and the training weights are the backup.
        checkpoint[TRAIN_STATE_KEY] = self._backup if self._backup is not None else checkpoint["state_dict"]
        checkpoint["state_dict"] = dict(self.ema_state)

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Runs after Lightning loaded ``state_dict`` (the average) into the model."""
        if trainer.state.fn != "fit":
            self.ema_state = None  # evaluating a checkpoint: the model already holds its average
            return
        if TRAIN_STATE_KEY not in checkpoint:
            return  # a checkpoint without EMA: the average starts from its weights
        self.ema_state = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        pl_module.load_state_dict(checkpoint[TRAIN_STATE_KEY])

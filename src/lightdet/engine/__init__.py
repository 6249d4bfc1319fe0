"""Training engine: the LightningModule, parameter groups, lr scaling, per-iteration lr schedules, EMA."""

from lightdet.engine.ema import EMA, TRAIN_STATE_KEY, ema_momentum
from lightdet.engine.module import CONFIG_KEY, DetectionModule, NonFiniteLossError
from lightdet.engine.optim import NORM_TYPES, build_param_groups, scale_lr
from lightdet.engine.schedules import build_warmup_scheduler, lr_factor

__all__ = [
    "CONFIG_KEY",
    "EMA",
    "NORM_TYPES",
    "DetectionModule",
    "NonFiniteLossError",
    "TRAIN_STATE_KEY",
    "build_param_groups",
    "build_warmup_scheduler",
    "ema_momentum",
    "lr_factor",
    "scale_lr",
]

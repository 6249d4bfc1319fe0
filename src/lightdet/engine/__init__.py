"""Training engine: the LightningModule, parameter groups, lr scaling, per-iteration lr schedules, EMA."""

from lightdet.engine.ema import EMA, TRAIN_STATE_KEY, ema_momentum
from lightdet.engine.module import CONFIG_KEY, DetectionModule, NonFiniteLossError
from lightdet.engine.optim import NORM_TYPES, ParamGroupRules, PrefixRule, build_optimizer, scale_lr
from lightdet.engine.schedules import (
    CosineDecay,
    DecayPolicy,
    NoDecay,
    StepDecay,
    build_warmup_scheduler,
    lr_factor,
)

__all__ = [
    "CONFIG_KEY",
    "EMA",
    "NORM_TYPES",
    "CosineDecay",
    "DecayPolicy",
    "DetectionModule",
    "NoDecay",
    "NonFiniteLossError",
    "ParamGroupRules",
    "PrefixRule",
    "StepDecay",
    "TRAIN_STATE_KEY",
    "build_optimizer",
    "build_warmup_scheduler",
    "ema_momentum",
    "lr_factor",
    "scale_lr",
]

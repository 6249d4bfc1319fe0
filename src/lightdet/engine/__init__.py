"""Training engine: the LightningModule, parameter groups, lr scaling and per-iteration lr schedules."""

from lightdet.engine.module import CONFIG_KEY, DetectionModule, NonFiniteLossError
from lightdet.engine.optim import NORM_TYPES, build_param_groups, scale_lr
from lightdet.engine.schedules import build_warmup_scheduler, lr_factor

__all__ = [
    "CONFIG_KEY",
    "NORM_TYPES",
    "DetectionModule",
    "NonFiniteLossError",
    "build_param_groups",
    "build_warmup_scheduler",
    "lr_factor",
    "scale_lr",
]

"""Loss modules, each with ``loss_weight`` and ``reduction``; box losses declare their ``target_space``."""

from lightdet.models.losses.box_losses import BoundedIoULoss, GIoULoss, IoULoss, L1Loss, SmoothL1Loss
from lightdet.models.losses.cross_entropy import CrossEntropyLoss
from lightdet.models.losses.focal import FocalLoss
from lightdet.models.losses.ghm import GHMCLoss
from lightdet.models.losses.quality_focal import QualityFocalLoss, quality_focal_loss
from lightdet.models.losses.reduction import weight_reduce
from lightdet.models.losses.regression import box_regression_loss

__all__ = [
    "BoundedIoULoss",
    "CrossEntropyLoss",
    "GIoULoss",
    "FocalLoss",
    "GHMCLoss",
    "IoULoss",
    "L1Loss",
    "QualityFocalLoss",
    "SmoothL1Loss",
    "box_regression_loss",
    "quality_focal_loss",
    "weight_reduce",
]

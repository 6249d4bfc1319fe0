"""Loading published weights: key converters for torchvision and MMDetection checkpoints, and presets."""

from lightdet.checkpoint.presets import (
    PRESETS,
    Preset,
    build_model,
    compose_model_config,
    convert,
    get_preset,
)
from lightdet.checkpoint.report import ConversionReport

__all__ = [
    "PRESETS",
    "ConversionReport",
    "Preset",
    "build_model",
    "compose_model_config",
    "convert",
    "get_preset",
]

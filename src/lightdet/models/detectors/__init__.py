"""Detectors: composed models with ``loss(batch)`` and ``predict(batch)``."""

from lightdet.models.detectors.base import Detector, to_original
from lightdet.models.detectors.two_stage import TwoStageDetector

__all__ = ["Detector", "TwoStageDetector", "to_original"]

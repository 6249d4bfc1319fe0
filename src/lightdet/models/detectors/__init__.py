"""Detectors: composed models with ``loss(batch)`` and ``predict(batch)``."""

from lightdet.models.detectors.base import Detector, to_original
from lightdet.models.detectors.single_stage import DenseHead, SingleStageDetector
from lightdet.models.detectors.two_stage import TwoStageDetector

__all__ = ["DenseHead", "Detector", "SingleStageDetector", "TwoStageDetector", "to_original"]

"""Fixtures of the model tests (builders live in ``model_builders.py``)."""

from __future__ import annotations

import pytest
import torch
from model_builders import build_tiny_detector, make_batch

from lightdet.models import TwoStageDetector
from lightdet.structures import DetBatch


@pytest.fixture
def tiny_detector() -> TwoStageDetector:
    torch.manual_seed(0)
    return build_tiny_detector()


@pytest.fixture
def batch() -> DetBatch:
    return make_batch()

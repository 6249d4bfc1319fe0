"""Fixtures of the evaluator tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from coco_random import RandomCoco, make_random_coco


@pytest.fixture
def random_coco(tmp_path: Path) -> RandomCoco:
    return make_random_coco(tmp_path / "instances.json")

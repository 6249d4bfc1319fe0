"""Fixtures for the data tests: tiny COCO files written into tmp_path and a tiny shapes dataset."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from data_helpers import default_coco
from PIL import Image

from lightdet.data import make_shapes


@pytest.fixture
def coco_dir(tmp_path: Path) -> Callable[..., Path]:
    """``make(data=None, images=True) -> root`` writing ``root/ann.json`` and ``root/img/*``."""

    def make(data: dict[str, Any] | None = None, images: bool = True) -> Path:
        data = default_coco() if data is None else data
        (tmp_path / "img").mkdir(exist_ok=True)
        (tmp_path / "ann.json").write_text(json.dumps(data))
        rng = np.random.default_rng(0)
        for img in data["images"] if images else []:
            pixels = rng.integers(0, 255, (img["height"], img["width"], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "img" / img["file_name"])
        return tmp_path

    return make


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12 + 6 image shapes dataset (shared by the tests; do not modify)."""
    return make_shapes(tmp_path_factory.mktemp("shapes"), num_train=12, num_val=6, seed=3)

"""Fixtures for the command-line integration tests: a tiny shapes dataset shared by the module."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import SHAPES_PARAMS

from lightdet.data.synthetic import make_shapes


@pytest.fixture(scope="session")
def shapes_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory holding a tiny ``shapes`` dataset (generated once per session)."""
    data_dir = tmp_path_factory.mktemp("data")
    make_shapes(data_dir / "shapes", **SHAPES_PARAMS)
    return data_dir

"""Fixtures of the export tests (their models and helpers are in ``export_builders``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from export_builders import image_batches, write_checkpoint

from lightdet.structures import DetBatch


@pytest.fixture
def batches() -> list[DetBatch]:
    return image_batches()


@pytest.fixture(scope="session")
def shapes_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny shapes dataset (4 validation images)."""
    from lightdet.data.synthetic import make_shapes

    data = tmp_path_factory.mktemp("data")
    make_shapes(data / "shapes", num_train=4, num_val=4, seed=0)
    return data


@pytest.fixture(scope="session")
def shapes_checkpoint(tmp_path_factory: pytest.TempPathFactory, shapes_data: Path) -> Path:
    """A seeded (untrained) quickstart Faster R-CNN checkpoint carrying its config; its classifier bias makes
    class 0 confident, so detections above 0.5 exist to compare."""
    from hydra.utils import instantiate

    import lightdet

    run = tmp_path_factory.mktemp("run")
    cfg = lightdet.compose(
        overrides=[f"paths.data_dir={shapes_data}", "dataset.num_workers=0"], output_dir=run
    )
    torch.manual_seed(0)
    model = instantiate(cfg.model, _convert_="all").eval()
    with torch.no_grad():
        model.roi_head.bbox_head.fc_cls.bias[0] += 4.0
    return write_checkpoint(model, cfg, run / "seeded.ckpt")

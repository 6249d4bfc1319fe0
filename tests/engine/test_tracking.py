"""logger=mlflow / logger=wandb: the configs compose, a missing package names the extra to install, and an
MLflow run in a local file store receives the metrics and the validation images."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from hydra.utils import instantiate
from PIL import Image

from lightdet.engine.tracking import MLFlowLogger, WandbLogger, require_tracker
from lightdet.engine.val_images import log_images


@pytest.mark.parametrize("name", ["mlflow", "wandb"])
def test_tracker_configs_keep_csv_and_tensorboard(compose_cfg, name: str) -> None:
    cfg = compose_cfg([f"logger={name}"])
    assert set(cfg.logger) == {"csv", "tensorboard", name}
    assert cfg.logger[name]._target_ == f"lightdet.engine.tracking.{'MLFlowLogger' if name == 'mlflow' else 'WandbLogger'}"
    if name == "wandb":
        assert cfg.logger.wandb.offline is True and cfg.logger.wandb.save_dir == cfg.paths.output_dir
    else:
        assert cfg.logger.mlflow.tracking_uri == f"sqlite:///{cfg.paths.output_root}/mlflow.db"


def test_a_missing_tracker_names_the_extra_to_install() -> None:
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'lightdet\[somewhere\]'"):
        require_tracker("no_such_tracker_package", "somewhere")


@pytest.mark.skipif(importlib.util.find_spec("wandb") is not None, reason="wandb is installed here")
def test_wandb_without_the_package_stops_before_training(compose_cfg) -> None:
    from hydra.errors import InstantiationException

    cfg = compose_cfg(["logger=wandb"])
    # what `lightdet-train logger=wandb` ends its traceback with
    with pytest.raises(InstantiationException, match=r"logger=wandb needs the 'wandb' package.*lightdet\[wandb\]"):
        instantiate(cfg.logger.wandb)
    with pytest.raises(ModuleNotFoundError, match="lightdet.wandb"):
        WandbLogger()


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="mlflow is not installed (lightdet[mlflow])")
def test_mlflow_local_store_receives_metrics_and_images(compose_cfg, tmp_path: Path) -> None:
    cfg = compose_cfg(["logger=mlflow", f"paths.output_root={tmp_path}"])
    logger = instantiate(cfg.logger.mlflow)
    assert isinstance(logger, MLFlowLogger)
    logger.log_metrics({"val/bbox_mAP": 0.5}, step=3)
    assert log_images([logger], "val_predictions", [Image.new("RGB", (32, 24), "red")], step=3) == 1
    logger.finalize("success")
    run = logger.experiment.get_run(logger.run_id)
    assert run.data.metrics["val/bbox_mAP"] == 0.5
    assert (tmp_path / "mlflow.db").is_file()
    stored = [p for p in (tmp_path / "mlartifacts").rglob("*.png") if "val_predictions" in p.name]
    assert stored  # the image went into the run's artifacts

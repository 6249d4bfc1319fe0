"""Experiment trackers as loggers: MLflow (a local SQLite store) and Weights & Biases (offline mode).

Both packages are optional (``pip install 'lightdet[mlflow]'`` / ``'lightdet[wandb]'``); choosing
``logger=mlflow`` or ``logger=wandb`` without them stops before training with the command that installs
them, instead of Lightning's generic requirement error.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger as _MLFlowLogger
from lightning.pytorch.loggers import WandbLogger as _WandbLogger

__all__ = ["MLFlowLogger", "WandbLogger", "require_tracker"]


def require_tracker(package: str, extra: str) -> None:
    """Raises ``ModuleNotFoundError`` naming the extra to install when ``package`` cannot be imported."""
    if importlib.util.find_spec(package) is None:
        raise ModuleNotFoundError(
            f"logger={extra} needs the '{package}' package, which is not installed here: "
            f"pip install 'lightdet[{extra}]' (or pip install {package}), or choose another logger "
            "(logger=default: CSV and TensorBoard)"
        )


class MLFlowLogger(_MLFlowLogger):
    """Lightning's MLflow logger; fails early, naming ``lightdet[mlflow]``, when mlflow is missing.

    Args:
        experiment_name: the MLflow experiment (runs of one name are compared side by side).
        run_name: this run's name in the MLflow UI.
        tracking_uri: a tracking server or a local store, e.g. ``sqlite:///outputs/mlflow.db`` (what
            ``logger=mlflow`` uses); None: the file store ``save_dir``, which MLflow 3 only opens with
            ``MLFLOW_ALLOW_FILE_STORE=true``.
        save_dir: the file store, without ``tracking_uri``.
        kwargs: the other arguments of ``lightning.pytorch.loggers.MLFlowLogger`` (artifact_location, tags ...).
    """

    def __init__(
        self,
        experiment_name: str = "lightdet",
        run_name: str | None = None,
        tracking_uri: str | None = None,
        save_dir: str | None = "./mlruns",
        **kwargs: Any,
    ) -> None:
        require_tracker("mlflow", "mlflow")
        super().__init__(
            experiment_name=experiment_name, run_name=run_name, tracking_uri=tracking_uri, save_dir=save_dir, **kwargs
        )


class WandbLogger(_WandbLogger):
    """Lightning's Weights & Biases logger; fails early, naming ``lightdet[wandb]``, when wandb is missing.

    Args:
        project: the W&B project.
        name: this run's display name.
        save_dir: where the run's files go (``wandb/`` inside it).
        offline: write locally only (``wandb sync <save_dir>/wandb/offline-run-*`` uploads later).
        kwargs: the other arguments of ``lightning.pytorch.loggers.WandbLogger``.
    """

    def __init__(
        self,
        project: str = "lightdet",
        name: str | None = None,
        save_dir: str = ".",
        offline: bool = True,
        **kwargs: Any,
    ) -> None:
        require_tracker("wandb", "wandb")
        super().__init__(project=project, name=name, save_dir=save_dir, offline=offline, **kwargs)

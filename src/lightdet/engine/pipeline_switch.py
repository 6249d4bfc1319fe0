"""Switch the train pipeline at an epoch: strong augmentation off for the last epochs.

MMDetection's ``PipelineSwitchHook`` (RTMDet: Mosaic and MixUp off for the last 20 of 300 epochs),
ultralytics' ``close_mosaic`` and RT-DETR's ``stop_epoch`` policy (photometric distortion, zoom-out and
IoU crop off for the last epoch) are this one callback. It hands the late pipeline to the datamodule
(:meth:`lightdet.data.DetDataModule.switch_train_pipeline`) when fitting starts, and at the end of the
epoch before the switch asks the trainer to build the train loader again, so that new workers load
with the late pipeline (with ``persistent_workers`` too). A resumed run past the switch builds its
first loader with the late pipeline.

The same switch ends what the model does to its training batches in the early epochs: at the start of
every training epoch each part of the model that implements :class:`LateTraining` is told whether the
epoch is past the switch (:class:`~lightdet.models.RTDETR`: its multi-scale batches stop with the strong
augmentation, as RT-DETRv2's and D-FINE's ``stop_epoch`` stops their collate function's sizes). A resumed
run is told at its first epoch.

Configuration (``conf/callbacks/pipeline_switch.yaml``; add it to the other callbacks with
``callbacks=[default,pipeline_switch]`` or ``callbacks=[ema,pipeline_switch]``):

.. code-block:: yaml

    pipeline_switch:
      _target_: lightdet.engine.pipeline_switch.PipelineSwitch
      epoch: -1                # the last epoch (RT-DETR); -20: the last 20 (280 of 300, RTMDet)
      pipeline: ${oc.select:dataset.pipeline.train_late,null}

``dataset.pipeline.train_late`` is the late list of the pipeline files that have one
(``dataset/pipeline=rtmdet_strong``, ``rtdetr_strong``, ``shapes_rtmdet_strong``, ``shapes_rtdetr_strong``);
``callbacks.pipeline_switch.epoch=...`` and ``callbacks.pipeline_switch.pipeline=...`` override them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info

__all__ = ["LateTraining", "PipelineSwitch"]


@runtime_checkable
class LateTraining(Protocol):
    """A model part that trains differently from the pipeline switch on (see the module docstring)."""

    def set_late_training(self, late: bool) -> None:
        """``late``: the current training epoch is the switch epoch or a later one."""


class PipelineSwitch(Callback):
    """Trains with ``pipeline`` from epoch ``epoch`` on.

    Args:
        epoch: the first epoch (0-based) of the late pipeline; a negative value counts back from
            ``trainer.max_epochs`` (``-20`` with 300 epochs is 280, ``-1`` the last epoch).
        pipeline: the late train pipeline, a list of steps starting with ``LoadImage`` (for a
            :class:`~lightdet.data.MultiImageMixDataset`, its steps after loading).

    Raises:
        ValueError: for a missing pipeline, or a negative epoch without ``max_epochs``.
        TypeError: when the trainer's datamodule cannot switch pipelines.
    """

    def __init__(self, epoch: int, pipeline: Sequence[Any] | None) -> None:
        if pipeline is None:
            raise ValueError(
                "PipelineSwitch: no late pipeline. The dataset's pipeline file has no `train_late` list; choose "
                "one that has (dataset/pipeline=rtmdet_strong, rtdetr_strong, ...) or set "
                "callbacks.pipeline_switch.pipeline"
            )
        self.epoch = int(epoch)
        self.pipeline = list(pipeline)
        self._saved_reload: int | None = None
        self._told_late = False

    def switch_epoch(self, trainer: L.Trainer) -> int:
        """The 0-based epoch of the switch, negative ``epoch`` resolved against ``trainer.max_epochs``."""
        if self.epoch >= 0:
            return self.epoch
        max_epochs = trainer.max_epochs
        if max_epochs is None or max_epochs < 0:
            raise ValueError(f"PipelineSwitch: epoch={self.epoch} counts back from max_epochs, which is not set")
        return max(max_epochs + self.epoch, 0)

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        datamodule = trainer.datamodule
        if not hasattr(datamodule, "switch_train_pipeline"):
            raise TypeError(
                "PipelineSwitch: the trainer needs a datamodule with switch_train_pipeline() (lightdet.data."
                f"DetDataModule), got {type(datamodule).__name__}"
            )
        datamodule.switch_train_pipeline(self.switch_epoch(trainer), self.pipeline)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch + 1 != self.switch_epoch(trainer):
            return
        # The trainer builds its train loader once, or every `reload_dataloaders_every_n_epochs`; ask
        # for one rebuild at the next epoch's start and restore the setting once that epoch has begun.
        self._saved_reload = trainer.reload_dataloaders_every_n_epochs
        trainer.reload_dataloaders_every_n_epochs = 1

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._saved_reload is not None:
            trainer.reload_dataloaders_every_n_epochs = self._saved_reload
            self._saved_reload = None
        self.tell_model(pl_module, trainer.current_epoch >= self.switch_epoch(trainer), trainer.current_epoch)

    def tell_model(self, pl_module: L.LightningModule, late: bool, epoch: int) -> None:
        """Calls ``set_late_training(late)`` on every :class:`LateTraining` part of ``pl_module``."""
        parts = [(name, m) for name, m in pl_module.named_modules() if isinstance(m, LateTraining)]
        for _, part in parts:
            part.set_late_training(late)
        if late and parts and not self._told_late:
            names = ", ".join(f"{name or 'model'} ({type(part).__name__})" for name, part in parts)
            rank_zero_info(f"epoch {epoch}: late training from the pipeline switch on for {names}")
        self._told_late = late

    def __repr__(self) -> str:
        return f"PipelineSwitch(epoch={self.epoch}, pipeline={self.pipeline})"

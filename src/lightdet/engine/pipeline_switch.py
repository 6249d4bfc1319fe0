"""Switch the train pipeline at an epoch: strong augmentation off for the last epochs.

MMDetection's ``PipelineSwitchHook`` (RTMDet: Mosaic and MixUp off for the last 20 of 300 epochs),
ultralytics' ``close_mosaic`` and RT-DETR's ``stop_epoch`` policy (photometric distortion, zoom-out and
IoU crop off for the last epoch) are this one callback. It hands the late pipeline to the datamodule
(:meth:`lightdet.data.DetDataModule.switch_train_pipeline`) when fitting starts, and at the end of the
epoch before the switch asks the trainer to build the train loader again, so that new workers load
with the late pipeline (with ``persistent_workers`` too). A resumed run past the switch builds its
first loader with the late pipeline.

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
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

__all__ = ["PipelineSwitch"]


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

    def __repr__(self) -> str:
        return f"PipelineSwitch(epoch={self.epoch}, pipeline={self.pipeline})"

"""A callback for the sweep tests: Ctrl-C in the middle of a job, on request of an environment variable."""

from __future__ import annotations

import os

import lightning as L
from lightning.pytorch.callbacks import Callback

#: ``"<job dir name>:<epoch>"``: raise KeyboardInterrupt when that job starts that epoch.
INTERRUPT_ENV = "LIGHTDET_TEST_INTERRUPT"


class InterruptAt(Callback):
    """Raises ``KeyboardInterrupt`` (what Ctrl-C does) at the start of an epoch of one run directory.

    Lightning then shuts the run down and exits the process, ending the whole sweep there. Without
    :data:`INTERRUPT_ENV` set it does nothing, so the same command line can be re-launched.
    """

    def __init__(self, output_dir: str) -> None:
        self.output_dir = output_dir

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        job, _, epoch = os.environ.get(INTERRUPT_ENV, ":").partition(":")
        if job and os.path.basename(self.output_dir) == job and trainer.current_epoch == int(epoch):
            raise KeyboardInterrupt

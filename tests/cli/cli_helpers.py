"""Helpers for the command-line integration tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

#: Overrides that make a CPU run take seconds: a tiny dataset, a tiny model, two batches per epoch.
TINY = [
    "dataset.num_train=16",
    "dataset.num_val=6",
    "dataset.batch_size=4",
    "dataset.num_workers=0",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=2",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "trainer.log_every_n_steps=1",
    "schedule.warmup_iters=2",
]

SHAPES_PARAMS = {"num_train": 16, "num_val": 6, "seed": 0}


def run_cli(args: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """Runs a console script of this environment (``lightdet-train`` ...) and captures its output."""
    exe = Path(sys.executable).with_name(args[0])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [str(exe), *args[1:]], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )

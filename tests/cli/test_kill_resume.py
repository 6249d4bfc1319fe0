"""SIGKILL at a checkpoint write, then resume: last.ckpt loads, the run finishes, metrics.csv has every step."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cli_helpers import TINY, run_cli

from lightdet.checkpoint.files import read_checkpoint

EPOCHS = 4
STEPS_PER_EPOCH = 2  # TINY's limit_train_batches


def _snapshot(folder: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime for p in folder.glob("*")} if folder.is_dir() else {}


def _kill_at_first_checkpoint_write(args: list[str], cwd: Path, run_dir: Path) -> None:
    exe = Path(sys.executable).with_name("lightdet-train")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    process = subprocess.Popen([str(exe), *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    folder = run_dir / "checkpoints"
    before = _snapshot(folder)
    deadline = time.monotonic() + 240
    try:
        while _snapshot(folder) == before:
            assert process.poll() is None, f"training ended before writing a checkpoint: {process.stderr.read()[-2000:]}"
            assert time.monotonic() < deadline, "no checkpoint written within 240 s"
            time.sleep(0.005)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stderr.close()


def test_kill_at_a_checkpoint_write_then_resume(tmp_path: Path, shapes_data_dir: Path) -> None:
    run_dir = tmp_path / "run"
    args = [
        *TINY, f"paths.data_dir={shapes_data_dir}", f"hydra.run.dir={run_dir}", f"trainer.max_epochs={EPOCHS}",
        "schedule.max_epochs=4", "trainer.limit_val_batches=1",
    ]  # fmt: skip
    _kill_at_first_checkpoint_write(args, tmp_path, run_dir)
    resumed = run_cli(["lightdet-train", *args, "resume=auto"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    last = read_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert last["global_step"] == EPOCHS * STEPS_PER_EPOCH
    with open(run_dir / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    train_steps = [int(r["step"]) for r in rows if r.get("train/loss")]
    assert train_steps == list(range(EPOCHS * STEPS_PER_EPOCH))
    assert sorted(int(r["epoch"]) for r in rows if r.get("val/bbox_mAP")) == list(range(EPOCHS))

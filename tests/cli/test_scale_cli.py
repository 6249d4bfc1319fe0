"""Scaling out: trainer=ddp_sim (2 gloo processes under Hydra), bf16-mixed, accumulation, callbacks=ema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_helpers import TINY, run_cli

# 2 processes x 2 images, one training and one validation batch per epoch, one epoch
DDP_SIM = [
    *(o for o in TINY if not o.startswith(("trainer.accelerator", "trainer.devices"))),
    "trainer=ddp_sim", "dataset.batch_size=2", "trainer.limit_train_batches=1", "trainer.limit_val_batches=1",
    "trainer.max_epochs=1", "logger=csv",
]  # fmt: skip


def _run_files(run_dir: Path) -> set[str]:
    return {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()}


def _check_rank_zero_run(run_dir: Path) -> None:
    """One set of run files, written by rank 0; rank 1 only adds its own log file."""
    files = _run_files(run_dir)
    assert {"config.yaml", "summary.json", "checkpoints/last.ckpt", "train.log"} <= files, files
    assert "train_ddp_process_1.log" in files and not any("rank" in f for f in files)
    assert len([f for f in files if f.endswith(".ckpt")]) == 2  # last + best, once
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [row["epoch"] for row in summary["history"]] == [0]
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 1


@pytest.mark.slow  # 3 interpreters (Hydra parent + rank 1 child): about 15 s
def test_ddp_sim_run_writes_one_run_directory(tmp_path: Path, shapes_data_dir: Path) -> None:
    outputs = tmp_path / "outputs"
    proc = run_cli(
        ["lightdet-train", *DDP_SIM, f"paths.data_dir={shapes_data_dir}", f"paths.output_root={outputs}"], tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = [p for p in outputs.rglob("*") if p.is_dir() and (p / ".hydra").is_dir()]
    assert len(runs) == 1, runs  # rank 1 re-ran Hydra into the rank-0 directory, not a new timestamped one
    _check_rank_zero_run(runs[0])


@pytest.mark.slow  # 2 jobs x 2 processes: about 25 s
def test_ddp_sim_in_a_multirun_runs_each_job_once_in_its_directory(tmp_path: Path, shapes_data_dir: Path) -> None:
    outputs, sweep = tmp_path / "outputs", tmp_path / "sweep"
    proc = run_cli(
        ["lightdet-train", "-m", "optimizer.lr=0.01,0.02", *DDP_SIM, f"paths.data_dir={shapes_data_dir}",
         f"paths.output_root={outputs}", f"hydra.sweep.dir={sweep}"],
        tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not outputs.exists()  # no child wrote a run directory of its own
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    for job, lr in (("0", 0.01), ("1", 0.02)):
        _check_rank_zero_run(sweep / job)
        config = (sweep / job / "config.yaml").read_text()
        assert f"lr: {lr}" in config


def _train(compose_cfg, data_dir: Path, extra: list[str]):
    from lightdet.api import train

    cfg = compose_cfg([*TINY, "logger=none", *extra])
    cfg.paths.data_dir = str(data_dir)
    return train(cfg)


@pytest.mark.slow  # bfloat16 autocast on a CPU: about 8 s
def test_bf16_mixed_trains_a_few_cpu_steps(compose_cfg, shapes_data_dir: Path) -> None:
    # bfloat16 autocast is slow on CPUs without bf16 units: 2 small training steps, no validation
    extra = ["trainer.precision=bf16-mixed", "trainer.max_epochs=1", "dataset.batch_size=2", "trainer.limit_val_batches=0"]
    result = _train(compose_cfg, shapes_data_dir, extra)
    assert result.trainer.precision == "bf16-mixed" and result.trainer.global_step == 2
    assert torch.isfinite(result.trainer.callback_metrics["train/loss"])
    assert all(torch.isfinite(p).all() for p in result.module.parameters())


def test_gradient_accumulation_counts_optimizer_steps(compose_cfg, shapes_data_dir: Path) -> None:
    """2 batches per epoch, 2 accumulated: 1 optimizer step and 1 scheduler step per epoch."""
    result = _train(compose_cfg, shapes_data_dir, ["trainer.accumulate_grad_batches=2", "trainer.max_epochs=2",
                                                   "module.auto_scale_lr=true"])  # fmt: skip
    trainer, module = result.trainer, result.module
    assert trainer.global_step == 2 and module._iters_per_epoch() == 1
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.last_epoch == 2  # stepped once per optimizer step, not per batch
    # auto_scale_lr counts the accumulated batches: 4 images x 2 / 16 x the configured 0.02
    assert scheduler.base_lrs[0] == pytest.approx(0.02 * 8 / 16 * scheduler.optimizer.param_groups[0]["lr_mult"])


def test_training_with_ema_checkpoints_the_average(compose_cfg, shapes_data_dir: Path) -> None:
    from lightdet.engine import CONFIG_KEY, EMA, TRAIN_STATE_KEY

    result = _train(compose_cfg, shapes_data_dir, ["callbacks=ema", "trainer.max_epochs=1"])
    ema = next(c for c in result.trainer.callbacks if isinstance(c, EMA))
    ckpt = torch.load(result.output_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt[CONFIG_KEY]["callbacks"]["ema"]["momentum"] == 0.0002
    live = result.module.state_dict()
    for key in ("detector.backbone.conv1.weight", "detector.roi_head.bbox_head.fc_cls.weight"):
        torch.testing.assert_close(ckpt["state_dict"][key], ema.ema_state[key])
        torch.testing.assert_close(ckpt[TRAIN_STATE_KEY][key], live[key])
    assert not torch.equal(ckpt["state_dict"]["detector.roi_head.bbox_head.fc_cls.weight"],
                           live["detector.roi_head.bbox_head.fc_cls.weight"])  # fmt: skip

"""Hydra multirun: a 2x2 grid in one directory per job, resuming an interrupted sweep, an Optuna study."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from cli_helpers import TINY, run_cli
from omegaconf import OmegaConf
from sweep_helpers import INTERRUPT_ENV

from lightdet.cli.train import check_resumed_job
from lightdet.engine import CONFIG_KEY

GRID = ["optimizer.lr=0.01,0.02", "schedule.max_epochs=1,2"]
# One training and one validation batch per epoch: a sweep test is about the jobs, not the training.
ONE_BATCH = [*TINY, "trainer.limit_train_batches=1", "trainer.limit_val_batches=1", "logger=csv"]
# A resumable sweep: a fixed sweep directory and resume=auto (each job resumes its own last.ckpt).
INTERRUPTIBLE = ["+callbacks.interrupt._target_=sweep_helpers.InterruptAt",
                 "+callbacks.interrupt.output_dir=${paths.output_dir}", "resume=auto"]  # fmt: skip


def _history(job_dir: Path) -> list[dict]:
    return json.loads((job_dir / "summary.json").read_text())["history"]


@pytest.mark.slow  # 2 launches, 6 one-batch epochs of the tiny model in all: about 30 s
def test_grid_sweep_runs_four_jobs_and_resumes_after_an_interrupt(
    tmp_path: Path, shapes_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep = tmp_path / "sweep"
    args = ["lightdet-train", "-m", *GRID, *ONE_BATCH, *INTERRUPTIBLE,
            f"paths.data_dir={shapes_data_dir}", f"hydra.sweep.dir={sweep}"]  # fmt: skip
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).parent))
    # Ctrl-C when job 1 (lr 0.01, 2 epochs) starts its second epoch: job 0 is done, jobs 2 and 3 never start.
    monkeypatch.setenv(INTERRUPT_ENV, "1:1")
    proc = run_cli(args, tmp_path)
    assert proc.returncode != 0 and "KeyboardInterrupt" in proc.stdout + proc.stderr
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    assert [r["epoch"] for r in _history(sweep / "1")] == [0]
    finished_ckpt = sweep / "0" / "checkpoints" / "last.ckpt"
    finished_mtime = finished_ckpt.stat().st_mtime_ns

    monkeypatch.delenv(INTERRUPT_ENV)
    proc = run_cli(args, tmp_path)  # the same command again
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    for job in (0, 1):
        assert f"job {job} continues from {sweep / str(job) / 'checkpoints' / 'last.ckpt'}" in log
    assert finished_ckpt.stat().st_mtime_ns == finished_mtime  # the finished job trained no further
    expected_epochs = {"0": [0], "1": [0, 1], "2": [0], "3": [0, 1]}  # job n: lr index n // 2, epochs n % 2 + 1
    for job, epochs in expected_epochs.items():
        job_dir = sweep / job
        assert (job_dir / "checkpoints" / "last.ckpt").is_file() and (job_dir / "config.yaml").is_file()
        assert [r["epoch"] for r in _history(job_dir)] == epochs, job
        overrides = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text())
        assert f"optimizer.lr={0.01 * (1 + int(job) // 2):g}" in overrides
        assert f"schedule.max_epochs={len(epochs)}" in overrides


def test_resume_refuses_a_checkpoint_of_other_swept_values(compose_cfg, tmp_path: Path) -> None:
    cfg = compose_cfg(["optimizer.lr=0.02", "schedule=1x"])
    other = compose_cfg(["optimizer.lr=0.01", "schedule=1x"])
    ckpt = tmp_path / "last.ckpt"
    torch.save({CONFIG_KEY: OmegaConf.to_container(other, resolve=False)}, ckpt)
    check_resumed_job(cfg, ckpt, ["schedule"])  # the same schedule: fine
    with pytest.raises(ValueError, match=r"optimizer.lr=0.01.*this job has optimizer.lr=0.02"):
        check_resumed_job(cfg, ckpt, ["schedule", "optimizer.lr"])


@pytest.mark.slow  # 2 trials of one one-batch epoch: about 15 s
def test_optuna_sweep_maximises_the_returned_map(tmp_path: Path, shapes_data_dir: Path) -> None:
    sweep = tmp_path / "optuna"
    proc = run_cli(
        ["lightdet-train", "hparams_search=optuna", "hydra.sweeper.n_trials=2", *ONE_BATCH, "trainer.max_epochs=1",
         f"paths.data_dir={shapes_data_dir}", f"hydra.sweep.dir={sweep}"],
        tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    trials = [json.loads((sweep / str(n) / "summary.json").read_text())["best"]["val/bbox_mAP"] for n in (0, 1)]
    assert results["best_value"] == pytest.approx(max(trials))
    # TINY sets schedule.warmup_iters on the command line: that fixes it, the study searches the rest
    assert set(results["best_params"]) == {"optimizer.lr", "optimizer.weight_decay"}


def test_slurm_launcher_config_follows_the_trainer(compose_cfg) -> None:
    cfg = compose_cfg(["hydra/launcher=slurm", "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2",
                       "hydra.launcher.partition=gpu"])  # fmt: skip
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 4, 4)
    assert launcher.partition == "gpu" and launcher.submitit_folder.endswith("/.submitit/%j")


def test_optuna_search_composes_as_a_maximising_multirun(compose_cfg) -> None:
    cfg = compose_cfg(["hparams_search=optuna"])
    sweeper = cfg.hydra.sweeper
    assert cfg.hydra.mode.name == "MULTIRUN" and sweeper.direction == "maximize"
    assert sweeper._target_.endswith("OptunaSweeper") and "optimizer.lr" in sweeper.params
    assert sweeper.sampler.seed == cfg.seed

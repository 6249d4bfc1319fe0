"""lightdet-train and lightdet-test end to end on a tiny shapes dataset (CPU)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from cli_helpers import TINY, run_cli
from omegaconf import OmegaConf

from lightdet.api import evaluate, train


def test_cfg_job_composes_from_another_directory(tmp_path: Path) -> None:
    proc = run_cli(["lightdet-train", "model=faster_rcnn", "dataset=coco", "schedule=1x", "--cfg", "job"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    cfg = OmegaConf.create(proc.stdout)
    assert cfg.dataset.num_classes == 80 and cfg.model.roi_head.bbox_head.num_classes == 80
    assert cfg.trainer.max_epochs == 12 and list(cfg.schedule.policy.milestones) == [8, 11]


def test_typo_in_key_names_the_nearest_keys(tmp_path: Path) -> None:
    proc = run_cli(["lightdet-train", "optimizer.lrr=0.01"], tmp_path)
    assert proc.returncode == 2
    assert "unknown config key 'optimizer.lrr'" in proc.stderr and "lr" in proc.stderr.split("nearest")[-1]
    assert "Traceback" not in proc.stderr


def test_typo_in_group_option_lists_the_options(tmp_path: Path) -> None:
    proc = run_cli(["lightdet-train", "model=fastr_rcnn"], tmp_path)
    assert proc.returncode == 2
    assert "faster_rcnn" in proc.stderr and "Traceback" not in proc.stderr


def test_help_teaches_the_groups(tmp_path: Path) -> None:
    proc = run_cli(["lightdet-train", "--help"], tmp_path)
    assert proc.returncode == 0
    assert "model/backbone" in proc.stdout and "Examples" in proc.stdout


@pytest.mark.slow
def test_cli_trains_and_tests_a_few_steps(tmp_path: Path, shapes_data_dir: Path) -> None:
    run_dir = tmp_path / "run"
    args = [*TINY, f"paths.data_dir={shapes_data_dir}", f"hydra.run.dir={run_dir}", "trainer.max_epochs=1"]
    proc = run_cli(["lightdet-train", *args], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["best"]["epoch"] == 0 and summary["best"]["val/bbox_mAP"] is not None
    out = tmp_path / "results" / "val.json"
    proc = run_cli(
        ["lightdet-test", f"ckpt={run_dir / 'checkpoints' / 'last.ckpt'}", f"out={out}", "split=val",
         f"hydra.run.dir={tmp_path / 'test_run'}", "trainer.enable_progress_bar=false"],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "bbox_mAP" in proc.stdout
    assert isinstance(json.loads(out.read_text()), list)
    assert "test/bbox_mAP" in json.loads((out.parent / "summary.json").read_text())["metrics"]


def _train(compose_cfg, data_dir: Path, extra: list[str]):
    cfg = compose_cfg([*TINY, *extra])
    cfg.paths.data_dir = str(data_dir)
    return cfg, train(cfg)


def test_run_directory_layout(compose_cfg, shapes_data_dir: Path) -> None:
    cfg, result = _train(compose_cfg, shapes_data_dir, ["trainer.max_epochs=2"])
    out = Path(cfg.paths.output_dir)
    assert (out / "config.yaml").is_file() and (out / "checkpoints" / "last.ckpt").is_file()
    best = result.summary["best"]
    assert best["ckpt"] and Path(best["ckpt"]).is_file() and Path(best["ckpt"]).parent == out / "checkpoints"
    assert [row["epoch"] for row in result.summary["history"]] == [0, 1]
    assert json.loads((out / "summary.json").read_text())["best"]["val/bbox_mAP"] == best["val/bbox_mAP"]
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert any(r.get("train/loss") for r in rows) and any(r.get("val/bbox_mAP") for r in rows)
    assert any((out / "tensorboard").rglob("events.out.tfevents.*"))
    stored = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    # last.ckpt is the latest epoch even when the last epoch did not improve the best mAP
    assert stored["epoch"] == 1 and stored["global_step"] == result.trainer.global_step
    stored_cfg = OmegaConf.create(stored["lightdet_config"])
    assert stored_cfg.dataset.num_classes == 5 and stored_cfg.model.roi_head.bbox_head.num_classes == 5


def test_resume_continues_counters_and_lr_schedule(compose_cfg, shapes_data_dir: Path, tmp_path: Path) -> None:
    keep_all = ["callbacks.model_checkpoint.save_top_k=-1", "callbacks.model_checkpoint.monitor=null",
                "callbacks.model_checkpoint.filename='epoch{epoch:02d}'", "trainer.max_epochs=2"]
    _, full = _train(compose_cfg, shapes_data_dir, keep_all)
    steps_per_epoch = full.trainer.global_step // 2
    first = Path(full.output_dir) / "checkpoints" / "epoch00.ckpt"
    assert first.is_file()
    cfg, resumed = _train(compose_cfg, shapes_data_dir, [*keep_all, f"ckpt_path={first}"])
    assert resumed.trainer.current_epoch == 2 and resumed.trainer.global_step == 2 * steps_per_epoch
    lr_full = full.trainer.optimizers[0].param_groups[0]["lr"]
    lr_resumed = resumed.trainer.optimizers[0].param_groups[0]["lr"]
    assert lr_resumed == pytest.approx(lr_full, rel=1e-9)
    assert [row["epoch"] for row in resumed.summary["history"]] == [0, 1]  # history survives the resume


def test_evaluate_a_checkpoint_with_overrides(compose_cfg, shapes_data_dir: Path, tmp_path: Path) -> None:
    _, result = _train(compose_cfg, shapes_data_dir, ["trainer.max_epochs=1"])
    ckpt = Path(result.output_dir) / "checkpoints" / "last.ckpt"
    out = tmp_path / "eval" / "results.json"
    overrides = [f"ckpt={ckpt}", f"out={out}", "split=val", "dataset.batch_size=2", *TINY]
    cfg = compose_cfg(overrides, config_name="test")
    cfg.paths.data_dir = str(shapes_data_dir)
    metrics = evaluate(cfg, overrides=overrides)
    assert set(metrics) >= {"test/bbox_mAP", "test/bbox_mAP_50"}
    results = json.loads(out.read_text())
    assert all({"image_id", "category_id", "bbox", "score"} <= set(r) for r in results)
    assert json.loads((out.parent / "summary.json").read_text())["metrics"] == metrics


def test_training_without_an_evaluator_keeps_checkpoints(compose_cfg, shapes_data_dir: Path) -> None:
    cfg, result = _train(compose_cfg, shapes_data_dir, ["trainer.max_epochs=1", "dataset.evaluator=null"])
    assert (Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt").is_file()
    assert result.summary["history"] == [] and result.best_score is None


def test_test_cli_without_ckpt_is_a_usage_error(tmp_path: Path) -> None:
    proc = run_cli(["lightdet-test", "split=val"], tmp_path)
    assert proc.returncode == 2 and "ckpt=PATH" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "outputs").exists()


def test_cfg_hydra_prints_without_resolving(tmp_path: Path) -> None:
    proc = run_cli(["lightdet-train", "--cfg", "hydra"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "run:" in proc.stdout

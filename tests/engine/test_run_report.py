"""The run report: a training run writes plots/ by itself (CLI, no progress bar; DDP: rank 0), its analysis
equals the evaluator's metrics, and validation predictions reach TensorBoard."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from lightdet.analysis import FIGURES
from lightdet.cli.analyze import main as analyze_main
from lightdet.data.synthetic import make_shapes
from lightdet.engine.report import RunReport

TINY = [
    "dataset.num_train=8", "dataset.num_val=6", "dataset.batch_size=4", "dataset.num_workers=0",
    "trainer.limit_train_batches=2", "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false", "trainer.log_every_n_steps=1", "schedule.warmup_iters=2",
    "model.roi_head.score_thr=0.0",  # a barely trained model: keep its low scores, so every figure has data
]  # fmt: skip


def _train_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("lightdet-train")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=900, env=env)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report_data")
    make_shapes(root / "shapes", num_train=8, num_val=6, seed=0)
    return root


@pytest.fixture(scope="module")
def run_dir(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A two-epoch CPU run through the console script; returns the run directory and its stdout."""
    run = tmp_path_factory.mktemp("report_run") / "run"
    proc = _train_cli([*TINY, "trainer.accelerator=cpu", "trainer.devices=1", f"paths.data_dir={data_dir}",
                       f"hydra.run.dir={run}"], run.parent)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run, proc.stdout


def test_a_run_gets_plots_and_the_analysis_of_its_last_validation(run_dir: tuple[Path, str]) -> None:
    run, stdout = run_dir
    results = run / "plots" / "results.png"
    with Image.open(results) as image:
        assert image.width > 1000 and image.height > 500
    analysis = run / "plots" / "analysis"
    for name in [*FIGURES, "report.html", "analysis.json", "inputs.json", "val_results.json"]:
        assert (analysis / name).is_file() and (analysis / name).stat().st_size > 0, name
    # the console summary says where they are
    assert "plots" in stdout and "report.html" in stdout


def test_the_analysis_numbers_are_the_evaluators(run_dir: tuple[Path, str]) -> None:
    run, _ = run_dir
    last = json.loads((run / "summary.json").read_text())["last"]
    numbers = json.loads((run / "plots" / "analysis" / "analysis.json").read_text())
    for name in ("mAP", "mAP_50", "mAP_75", "AR_100"):
        assert numbers["stats"][name] == pytest.approx(last[f"val/bbox_{name}"], abs=1e-6), name
    assert numbers["num_images"] == 6
    inputs = json.loads((run / "plots" / "analysis" / "inputs.json").read_text())
    assert inputs["img_dir"].endswith("val") and inputs["cat_ids"] == [1, 2, 3, 4, 5]


def test_lightdet_analyze_redoes_a_run(run_dir: tuple[Path, str], tmp_path: Path) -> None:
    run, _ = run_dir
    assert analyze_main([str(run), "--out", str(tmp_path), "--no-progress"]) == 0
    again = json.loads((tmp_path / "analysis.json").read_text())
    first = json.loads((run / "plots" / "analysis" / "analysis.json").read_text())
    assert again["stats"] == first["stats"]


def test_validation_predictions_reach_tensorboard(run_dir: tuple[Path, str]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, _ = run_dir
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()["images"]
    assert sorted(tags) == [f"val_predictions/{k}" for k in range(4)]
    assert [e.step for e in events.Images("val_predictions/0")] == [2, 4]  # after each epoch's validation


def test_history_survives_a_checkpoint() -> None:
    report = RunReport("unused")
    report.train_rows = [{"step": 1, "epoch": 0, "train/loss": 1.0}]
    report.val_rows = [{"step": 2, "epoch": 0, "val/bbox_mAP": 0.1}]
    restored = RunReport("unused")
    restored.load_state_dict(report.state_dict())
    assert (restored.train_rows, restored.val_rows) == (report.train_rows, report.val_rows)


@pytest.mark.slow  # two gloo processes under Hydra
def test_ddp_run_writes_one_report_from_rank_zero(data_dir: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = _train_cli([*TINY, "trainer=ddp_sim", "dataset.batch_size=2", "trainer.max_epochs=1",
                       f"paths.data_dir={data_dir}", f"hydra.run.dir={run}"], tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    numbers = json.loads((run / "plots" / "analysis" / "analysis.json").read_text())
    last = json.loads((run / "summary.json").read_text())["last"]
    assert numbers["num_images"] == 6  # both ranks' images, gathered
    assert numbers["stats"]["mAP"] == pytest.approx(last["val/bbox_mAP"], abs=1e-6)
    assert (run / "plots" / "results.png").is_file()

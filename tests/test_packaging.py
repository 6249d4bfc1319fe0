"""The built wheel ships the configs: an installed (non-editable) lightdet composes from any directory."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_installed_wheel_runs_cfg_job_from_another_directory(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), str(ROOT)]
    subprocess.run(build, check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = wheels.glob("lightdet-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "lightdet/conf/train.yaml" in names and "lightdet/conf/model/backbone/resnet50.yaml" in names

    site = tmp_path / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)]
    subprocess.run(install, check=True, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import sys, lightdet; assert lightdet.__file__.startswith(sys.argv[1]), lightdet.__file__; "
        "from lightdet.cli.train import main; sys.argv = ['lightdet-train', 'model=faster_rcnn', "
        "'dataset=coco', '--cfg', 'job']; main()"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run(
        [sys.executable, "-c", code, str(site)], cwd=elsewhere, capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "num_classes: 80" in proc.stdout and "lightdet.models.TwoStageDetector" in proc.stdout

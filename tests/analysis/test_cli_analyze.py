"""``lightdet-analyze`` on a results file and on a run's recorded inputs; usage errors exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lightdet.analysis.report import AnalysisInputs
from lightdet.cli.analyze import build_parser, main


def test_results_file_with_ground_truth(results_file: Path, shapes_val: tuple[Path, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    ann_file, img_dir = shapes_val
    code = main([str(results_file), "--gt", str(ann_file), "--img-dir", str(img_dir), "--out", str(tmp_path),
                 "--no-progress", "--gallery", "4"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert f"report: {tmp_path / 'report.html'}" in out and "mAP" in out
    assert len(json.loads((tmp_path / "analysis.json").read_text())["gallery"]) == 4


def test_run_directory_reads_its_recorded_inputs(results_file: Path, shapes_val: tuple[Path, Path],
                                                 tmp_path: Path) -> None:  # fmt: skip
    folder = tmp_path / "run" / "plots" / "analysis"
    AnalysisInputs(str(results_file), str(shapes_val[0]), image_ids=[1, 2, 3]).save(folder)
    assert main([str(tmp_path / "run"), "--no-progress", "--gallery", "1"]) == 0
    numbers = json.loads((folder / "analysis.json").read_text())
    assert numbers["num_images"] == 3


def test_usage_errors(results_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(results_file), "--no-progress"]) == 2
    assert "--gt" in capsys.readouterr().err
    assert main([str(tmp_path / "nowhere.json"), "--gt", "x.json"]) == 2
    assert "no such results file or run directory" in capsys.readouterr().err
    assert main([str(tmp_path), "--no-progress"]) == 2  # a folder that no training run wrote
    assert "inputs.json" in capsys.readouterr().err


def test_help_lists_the_figures_and_both_forms() -> None:
    text = build_parser().format_help()
    for needle in ("--gt", "--img-dir", "run directory", "confusion_matrix.png", "lightdet-test", "report.html"):
        assert needle in text

"""lightdet-export end to end on a seeded quickstart checkpoint; the file through lightdet-infer,
Predictor.from_checkpoint and lightdet-test (the same bbox mAP as the checkpoint)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import lightdet
from lightdet.cli.export import build_parser, main
from lightdet.cli.infer import main as infer_main
from lightdet.export import assert_parity, read_metadata


@pytest.fixture(scope="module")
def onnx_file(shapes_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "model.onnx"
    assert main([str(shapes_checkpoint), "--out", str(out)]) == 0
    return out


def test_help_teaches_the_signature_and_options() -> None:
    text = build_parser().format_help()
    for needle in (
        "uint8 RGB images [B, 3, H, W]",
        "boxes [N, 4]",
        "batch_index",
        "NonMaxSuppression",
        "--dynamic",
        "--size H W",
        "--batch",
        "--half",
        "--opset",
        "exported_program",
        "lightdet[deploy]",
    ):
        assert needle in text, needle


def test_export_writes_metadata_and_passes_its_parity_check(
    onnx_file: Path, shapes_checkpoint: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    meta = read_metadata(onnx_file)
    assert meta.family == "faster_rcnn" and meta.class_names == [
        "circle",
        "square",
        "triangle",
        "star",
        "hexagon",
    ]
    assert meta.input_size["resize"] == {"scale": [144, 144], "keep_ratio": True, "downscale_only": True}
    assert meta.input_size["dynamic"] and meta.config is not None and meta.folded_norms > 0
    out = tmp = onnx_file.parent / "again.onnx"
    assert main([str(shapes_checkpoint), "--out", str(tmp)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "faster_rcnn, onnx, 5 classes" in printed
    assert "parity check against the eager model:" in printed and "(100.00%)" in printed


def test_bad_requests_exit_with_the_reason(
    shapes_checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main([str(shapes_checkpoint), "--format", "exported_program", "--out", str(tmp_path / "m.onnx")]) == 2
    )
    assert "must end in .pt2" in capsys.readouterr().err
    assert main([str(shapes_checkpoint), "--no-dynamic", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "static export" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.ckpt"), "--out", str(tmp_path / "m.onnx")]) == 2


def test_predictor_and_infer_accept_the_exported_file(
    onnx_file: Path, shapes_checkpoint: Path, shapes_data: Path, tmp_path: Path
) -> None:
    images = sorted((shapes_data / "shapes" / "val").iterdir())[:2]
    eager = lightdet.Predictor.from_checkpoint(shapes_checkpoint, device="cpu").predict(images)
    exported = lightdet.Predictor.from_checkpoint(onnx_file).predict(images)
    assert_parity(eager, exported)
    assert infer_main([str(onnx_file), *map(str, images), "--out", str(tmp_path / "a"), "--no-progress"]) == 0
    assert (
        infer_main([str(shapes_checkpoint), *map(str, images), "--out", str(tmp_path / "b"), "--no-progress"])
        == 0
    )
    a, b = (json.loads((tmp_path / d / "predictions.json").read_text()) for d in "ab")
    assert a["categories"] == b["categories"] and len(a["annotations"]) == len(b["annotations"]) > 0


def _lightdet_test(ckpt: Path, data: Path, out: Path) -> dict:
    exe = Path(sys.executable).with_name("lightdet-test")
    proc = subprocess.run(
        [
            str(exe),
            f"ckpt={ckpt}",
            "split=val",
            f"paths.data_dir={data}",
            f"out={out}",
            f"hydra.run.dir={out.parent / 'hydra'}",
            "trainer.enable_progress_bar=false",
            "dataset.num_workers=0",
            "dataset.datamodule.val_batch_size=1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out.parent / "summary.json").read_text())["metrics"]


@pytest.mark.slow
def test_lightdet_test_gives_the_checkpoints_map(
    onnx_file: Path, shapes_checkpoint: Path, shapes_data: Path, tmp_path: Path
) -> None:
    """One image per batch on both sides: the eager model pads a batch to its largest image, the file does not."""
    eager = _lightdet_test(shapes_checkpoint, shapes_data, tmp_path / "eager" / "results.json")
    exported = _lightdet_test(onnx_file, shapes_data, tmp_path / "onnx" / "results.json")
    assert abs(eager["test/bbox_mAP"] - exported["test/bbox_mAP"]) <= 1e-3
    rows = [json.loads((tmp_path / d / "results.json").read_text()) for d in ("eager", "onnx")]
    assert len(rows[0]) == len(rows[1]) > 0

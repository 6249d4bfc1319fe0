"""lightdet-test with test-time augmentation on an exported file: the file runs under the same
TestTimeAugmentation as the checkpoint's model (the same detections as the checkpoint with tta), and a file
exported for one image size refuses rescaled views by name before running anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lightdet.api import evaluate
from lightdet.cli.export import main
from lightdet.export import assert_parity, compare_detections
from lightdet.structures import Detections

RUN = [
    "split=val",
    "dataset.num_workers=0",
    "dataset.datamodule.val_batch_size=1",  # the eager model pads a batch to its largest image, a file does not
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "logger=none",
    "callbacks=none",
]


def lightdet_test(compose_cfg, ckpt: Path, data: Path, out: Path, *extra: str) -> list[Detections]:
    """``lightdet-test ckpt=... split=val out=...`` in-process; each image's detections from the results JSON."""
    overrides = [f"ckpt={ckpt}", f"out={out}", *RUN, *extra]
    cfg = compose_cfg(overrides, config_name="test")
    cfg.paths.data_dir = str(data)
    evaluate(cfg, overrides=overrides)
    rows = json.loads(out.read_text())
    images = sorted({r["image_id"] for r in rows})
    return [_detections([r for r in rows if r["image_id"] == i]) for i in images]


def _detections(rows: list[dict]) -> Detections:
    xywh = torch.tensor([r["bbox"] for r in rows], dtype=torch.float32).reshape(-1, 4)
    return Detections(
        boxes=torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1),
        scores=torch.tensor([r["score"] for r in rows], dtype=torch.float32),
        labels=torch.tensor([r["category_id"] for r in rows], dtype=torch.int64),
    )


def test_exported_file_runs_tta_as_the_checkpoint_does(
    compose_cfg, shapes_checkpoint: Path, shapes_data: Path, tmp_path: Path
) -> None:
    onnx = tmp_path / "model.onnx"
    assert main([str(shapes_checkpoint), "--out", str(onnx), "--no-check"]) == 0
    eager = lightdet_test(compose_cfg, shapes_checkpoint, shapes_data, tmp_path / "eager.json", "tta=flip")
    with_tta = lightdet_test(compose_cfg, onnx, shapes_data, tmp_path / "tta.json", "tta=flip")
    plain = lightdet_test(compose_cfg, onnx, shapes_data, tmp_path / "plain.json")
    report = assert_parity(eager, with_tta, what="the exported file with tta=flip")
    assert report.total >= 20
    assert compare_detections(plain, with_tta).matched_fraction < 0.9  # the mirrored views changed the result


def test_static_file_refuses_rescaled_views_by_name(
    compose_cfg, shapes_checkpoint: Path, shapes_data: Path, tmp_path: Path
) -> None:
    static = tmp_path / "static.onnx"
    args = ["--out", str(static), "--no-dynamic", "--size", "128", "128", "--no-check"]
    assert main([str(shapes_checkpoint), *args]) == 0
    message = r"static\.onnx: tta scales \[0\.8, 1\.2\] need other image sizes than the 128x128.*--dynamic"
    with pytest.raises(ValueError, match=message):
        lightdet_test(compose_cfg, static, shapes_data, tmp_path / "r.json", "tta=multiscale_flip")

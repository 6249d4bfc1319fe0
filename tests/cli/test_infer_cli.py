"""lightdet-infer end to end, and Detector.predict against the detections lightdet-test wrote (CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_helpers import TINY, run_cli
from PIL import Image

import lightdet
from lightdet.cli.infer import expand_inputs, main, normalise_argv
from lightdet.structures import xyxy_to_xywh


@pytest.fixture(scope="module")
def checkpoint(shapes_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A briefly trained checkpoint whose R-CNN keeps every box (score_thr 0), so outputs are never empty."""
    cfg = lightdet.compose(
        overrides=[*TINY, f"paths.data_dir={shapes_data_dir}", "trainer.max_epochs=1", "logger=none",
                   "model.roi_head.score_thr=0.0", "model.roi_head.max_per_img=20"],
        output_dir=tmp_path_factory.mktemp("run"),
    )
    return lightdet.train(cfg).output_dir / "checkpoints" / "last.ckpt"


@pytest.mark.slow
def test_predict_equals_lightdet_test_results(checkpoint: Path, shapes_data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = run_cli(
        ["lightdet-test", f"ckpt={checkpoint}", f"out={out}", "split=val", f"paths.data_dir={shapes_data_dir}",
         f"hydra.run.dir={tmp_path / 'test_run'}", "trainer.enable_progress_bar=false"],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    ann = json.loads((shapes_data_dir / "shapes" / "annotations" / "val.json").read_text())
    images = ann["images"]
    det = lightdet.Predictor.from_checkpoint(checkpoint, device="cpu")
    # lightdet-test ran the val images in dataset order, batched by 8: predict the same batch
    predicted = det.predict([shapes_data_dir / "shapes" / "val" / im["file_name"] for im in images], batch_size=8)
    for image, pred in zip(images, predicted):
        rows = sorted((r for r in results if r["image_id"] == image["id"]), key=lambda r: -r["score"])
        order = torch.argsort(pred.scores, descending=True, stable=True)
        assert len(rows) == len(pred) > 0
        assert torch.allclose(torch.tensor([r["score"] for r in rows]), pred.scores[order], atol=1e-6)
        assert torch.allclose(torch.tensor([r["bbox"] for r in rows]), xyxy_to_xywh(pred.boxes[order]),
                              atol=1e-3)
        assert [r["category_id"] for r in rows] == (pred.labels[order] + 1).tolist()


def test_lightdet_infer_writes_json_and_drawings(checkpoint: Path, shapes_data_dir: Path, tmp_path: Path) -> None:
    folder = shapes_data_dir / "shapes" / "val"
    out = tmp_path / "preds"
    proc = run_cli(["lightdet-infer", str(checkpoint), str(folder), "--out", str(out), "--draw", "--no-progress",
                    "--draw-thr", "0"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    payload = json.loads((out / "predictions.json").read_text())
    files = sorted(folder.glob("*.jpg"))
    assert [im["file_name"] for im in payload["images"]] == [str(f) for f in files]
    assert [c["name"] for c in payload["categories"]] == ["circle", "square", "triangle", "star", "hexagon"]
    sizes = {im["id"]: (im["width"], im["height"]) for im in payload["images"]}
    assert payload["annotations"]
    for a in payload["annotations"]:
        x, y, w, h = a["bbox"]
        width, height = sizes[a["image_id"]]
        assert min(x, y) >= 0 and x + w <= width + 0.01 and y + h <= height + 0.01 and 1 <= a["category_id"] <= 5
        assert 0 <= a["score"] <= 1
    first = lightdet.Predictor.from_checkpoint(checkpoint, device="cpu").predict(files[0])
    assert len([a for a in payload["annotations"] if a["image_id"] == 1]) == len(first)
    drawings = sorted((out / "vis").glob("*.png"))
    assert [d.stem for d in drawings] == [f.stem for f in files]
    with Image.open(drawings[0]) as img, Image.open(files[0]) as src:
        assert img.size == src.size


def test_inputs_files_folders_and_globs(tmp_path: Path) -> None:
    for name in ("b.jpg", "a.png", "notes.txt", "sub/c.jpg"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    assert expand_inputs([str(tmp_path)]) == [tmp_path / "a.png", tmp_path / "b.jpg"]
    assert expand_inputs([str(tmp_path / "**" / "*.jpg"), str(tmp_path / "b.jpg")]) == [
        tmp_path / "b.jpg", tmp_path / "sub" / "c.jpg"]
    with pytest.raises(FileNotFoundError, match="matches no file"):
        expand_inputs([str(tmp_path / "*.bmp")])


def test_key_value_spelling_of_the_design_contract() -> None:
    assert normalise_argv(["ckpt=m.ckpt", "input=imgs/", "out=o", "score_thr=0.3"]) == [
        "m.ckpt", "imgs/", "--out", "o", "--score-thr", "0.3"]
    assert normalise_argv(["m.ckpt", "x.jpg", "--draw"]) == ["m.ckpt", "x.jpg", "--draw"]


def test_missing_input_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "m.ckpt"), str(tmp_path / "nothing")]) == 2
    assert "nothing: no such file or folder" in capsys.readouterr().err

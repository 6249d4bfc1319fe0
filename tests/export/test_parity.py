"""Exported files against the eager model, per family: ONNX Runtime, TorchScript and ExportedProgram give the
same detections (boxes within 1e-2 px, scores within 1e-4, labels equal, masks IoU >= 0.99) at two image sizes
through one dynamic-shape file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from export_builders import FAMILIES, SIZES, export_model, image_batches, seeded_model
from model_builders import make_sample

from lightdet.export import assert_parity, load_export
from lightdet.structures import DetBatch, Detections, DetSample

MASK_FAMILIES = ("mask_rcnn", "cascade_mask_rcnn")


def eager(model, batches: list[DetBatch]) -> list[Detections]:
    with torch.no_grad():
        return [d for b in batches for d in model.predict(b)]


def exported(model, fmt: str, folder: Path, batches: list[DetBatch]) -> list[Detections]:
    detector = load_export(export_model(model, folder, fmt)).as_detector()
    return [d for b in batches for d in detector.predict(b)]


def check(reference: list[Detections], candidate: list[Detections], family: str) -> None:
    report = assert_parity(reference, candidate)
    assert report.total >= 100  # the tiny models keep ~100 boxes per image: the comparison has content
    assert (report.mask_iou is not None) == (family in MASK_FAMILIES)
    assert all(tuple(d.boxes.shape[1:]) == (4,) for d in candidate)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_onnx_runtime_and_torchscript_match_eager(
    family: str, tmp_path: Path, batches: list[DetBatch]
) -> None:
    model = seeded_model(family)
    reference = eager(model, batches)
    for fmt in ("onnx", "torchscript"):
        check(reference, exported(model, fmt, tmp_path, batches), family)


@pytest.mark.slow
# ExportedProgram shares every graph head with the ONNX and TorchScript files above; it is checked on the
# two-stage path with masks and on a dense head (each family costs 20-40 s of tracing here).
@pytest.mark.parametrize("family", ["mask_rcnn", "rtmdet"])
def test_exported_program_matches_eager(family: str, tmp_path: Path, batches: list[DetBatch]) -> None:
    model = seeded_model(family)
    check(eager(model, batches), exported(model, "exported_program", tmp_path, batches), family)


def test_batch_of_two_gives_each_images_detections(tmp_path: Path) -> None:
    """A --batch 2 file runs two same-size images in one call; rows are split back by batch_index."""
    model = seeded_model("faster_rcnn")
    batches = image_batches([(96, 128), (96, 128)])
    with torch.no_grad():
        reference = [model.predict(b)[0] for b in batches]
    runner = load_export(export_model(model, tmp_path, "onnx", batch=2))
    both = DetBatch.collate([b for batch in batches for b in _samples(batch)])
    candidate = runner.as_detector().predict(both)
    assert_parity(reference, candidate)
    raw = runner(both.images)
    assert set(raw["batch_index"].tolist()) == {0, 1}


def _samples(batch: DetBatch) -> list[DetSample]:
    return [
        DetSample(image=batch.images[i], boxes=batch.boxes[i], labels=batch.labels[i], meta=batch.metas[i])
        for i in range(len(batch))
    ]


def test_static_export_runs_its_size_and_names_it_for_others(tmp_path: Path) -> None:
    model = seeded_model("retinanet")
    batch, other = image_batches()
    with torch.no_grad():
        reference = model.predict(batch)
    runner = load_export(export_model(model, tmp_path, "onnx", dynamic=False, size=SIZES[0]))
    assert_parity(reference, runner.as_detector().predict(batch))
    with pytest.raises(ValueError, match="exported for 96x128 images only.*--dynamic"):
        runner.as_detector().predict(other)


def test_boxes_come_back_in_original_pixels(tmp_path: Path) -> None:
    """Metas with a scale factor and a flip: the runner maps boxes (and masks) back as the eager model does."""
    model = seeded_model("mask_rcnn")
    sample = make_sample(96, 128, seed=3, ori_size=(48, 64), scale_factor=(2.0, 2.0), flip=True)
    batch = DetBatch.collate([sample])
    with torch.no_grad():
        reference = model.predict(batch)
    candidate = load_export(export_model(model, tmp_path, "onnx")).as_detector().predict(batch)
    report = assert_parity(reference, candidate)
    assert candidate[0].masks is not None and tuple(candidate[0].masks.shape[1:]) == (48, 64)
    assert report.matched == report.total


def test_no_detection_above_the_threshold_gives_empty_outputs(tmp_path: Path) -> None:
    """Empty RoI batches run through RoIAlign, the mask convs and the paste in ONNX Runtime too."""
    model = seeded_model("mask_rcnn")
    model.roi_head.score_thr = 0.999
    batch = image_batches()[0]
    with torch.no_grad():
        assert len(model.predict(batch)[0]) == 0
    (det,) = load_export(export_model(model, tmp_path, "onnx")).as_detector().predict(batch)
    assert len(det) == 0 and det.masks is not None and tuple(det.masks.shape) == (0, *SIZES[0])

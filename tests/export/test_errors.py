"""Unsupported models and options are named with the reason; so are inputs an exported file cannot take."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from export_builders import CLASSES, export_model, seeded_model
from torch import nn

from lightdet.export import ExportError, ExportOptions, build_graph, export_detector, load_export
from lightdet.models import SoftNMS


@pytest.mark.parametrize("family", ["faster_rcnn", "fcos"])
def test_soft_nms_is_named_as_unsupported(family: str) -> None:
    model = seeded_model(family)
    owner = model.roi_head if family == "faster_rcnn" else model.bbox_head
    owner.nms = SoftNMS(0.3)
    with pytest.raises(ExportError, match=r"SoftNMS.*Python loop.*hard NMS"):
        build_graph(model)


def test_unknown_detector_is_named() -> None:
    class Mystery(nn.Module):
        preprocessor = seeded_model("fcos").preprocessor

    with pytest.raises(ExportError, match=r"Mystery cannot be exported.*SupportsExport"):
        build_graph(Mystery())


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (ExportOptions(format="tflite"), r"format 'tflite' is not supported: choose one of onnx"),
        (ExportOptions(opset=10), r"opset 10 is too old"),
        (ExportOptions(opset=13), r"RoIAlign\(aligned=True\).*opset 16"),
        (ExportOptions(dynamic=False), r"static export.*--size"),
        (ExportOptions(batch=0), r"batch must be >= 1"),
    ],
)
def test_bad_options_are_named(options: ExportOptions, message: str, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=message):
        export_detector(seeded_model("faster_rcnn"), tmp_path / "m.onnx", options, class_names=CLASSES)


def test_exported_program_needs_pt2_suffix(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"must end in \.pt2"):
        export_detector(
            seeded_model("fcos"),
            tmp_path / "m.onnx",
            ExportOptions(format="exported_program"),
            class_names=CLASSES,
        )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only message")
def test_half_needs_cuda(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="--half.*needs CUDA"):
        export_detector(
            seeded_model("fcos"), tmp_path / "m.onnx", ExportOptions(half=True), class_names=CLASSES
        )


def test_runner_names_what_it_cannot_take(tmp_path: Path) -> None:
    runner = load_export(export_model(seeded_model("fcos"), tmp_path, "torchscript"))
    with pytest.raises(ValueError, match=r"expects uint8 \[B, 3, H, W\]"):
        runner(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="exported for batches of 1, got 2"):
        runner(torch.zeros(2, 3, 64, 64, dtype=torch.uint8))


def test_not_an_export_is_named(tmp_path: Path) -> None:
    other = tmp_path / "model.ckpt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(ValueError, match="not a file written by lightdet-export"):
        load_export(other)

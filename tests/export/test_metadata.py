"""Metadata travels inside every format; files are recognised by content; nothing imports onnx up front."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from export_builders import CLASSES, export_model, seeded_model

from lightdet.export import exported_format, read_metadata


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_metadata_round_trip(fmt: str, tmp_path: Path) -> None:
    path = export_model(seeded_model("mask_rcnn"), tmp_path, fmt)
    meta = read_metadata(path)
    assert exported_format(path) == fmt and meta.format == fmt and meta.family == "mask_rcnn"
    assert meta.class_names == CLASSES and meta.outputs == [
        "boxes",
        "scores",
        "labels",
        "batch_index",
        "masks",
    ]
    assert meta.mask == {"size": 28, "threshold": 0.5, "paste_mode": "mmdet"}
    assert (
        meta.input_size["dynamic"] and meta.input_size["size_divisor"] == 32 and meta.input_size["batch"] == 1
    )
    assert meta.folded_norms == 20 and meta.score_threshold == 0.0


def test_checkpoints_and_other_files_are_not_exports(tmp_path: Path) -> None:
    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}}, ckpt)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert exported_format(ckpt) is None and exported_format(text) is None
    assert exported_format(tmp_path / "missing.onnx") is None


def test_lightdet_imports_no_onnx_package() -> None:
    code = (
        "import sys, lightdet, lightdet.api, lightdet.inference, lightdet.export, lightdet.cli.export, "
        "lightdet.cli.infer; print(sorted(m for m in sys.modules if m.split('.')[0] in ('onnx', 'onnxruntime')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

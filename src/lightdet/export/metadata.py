"""What an exported file records about itself, stored inside the file (no sidecar to lose).

ONNX keeps it in the model's ``metadata_props`` (key ``lightdet``; ONNX Runtime reads it with
``session.get_modelmeta().custom_metadata_map["lightdet"]``), TorchScript and ExportedProgram files in the
archive's extra file ``lightdet.json``. The JSON holds:

* ``family``, ``format``, ``class_names`` (label ``i`` is ``class_names[i]``);
* ``inputs`` / ``outputs``: tensor names; the input is ``uint8 [B, 3, H, W]`` RGB;
* ``input_size``: how to size an image before the graph: ``resize`` (``{"scale": [long, short], "keep_ratio":
  bool}`` of the test pipeline's ``Resize``, or null: the image as it is), ``size_divisor`` (padding done
  inside the graph), ``batch`` (null: any) and ``dynamic`` (whether other sizes than ``example_size`` run);
* ``score_threshold``: the minimum score of a returned detection;
* ``mask``: null, or ``{"size": M, "threshold": t, "paste_mode": "mmdet" | "torchvision"}`` to paste the
  ``masks`` output;
* ``half``, ``device`` (where PyTorch formats run), ``opset``, ``folded_norms``, ``lightdet_version``;
* ``config``: the composed lightdet config of the checkpoint (null for a model exported without one), from
  which :func:`lightdet.export.runtime.load_export` rebuilds the exact test pipeline.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

METADATA_KEY = "lightdet"
EXTRA_FILE = "lightdet.json"
FORMATS = ("onnx", "torchscript", "exported_program")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript", "exported_program": ".pt2"}


@dataclass
class ExportMetadata:
    """The record written into every exported file (see the module docstring)."""

    family: str
    format: str
    class_names: list[str]
    outputs: list[str]
    input_size: dict[str, Any]
    score_threshold: float
    mask: dict[str, Any] | None = None
    half: bool = False
    device: str = "cpu"
    opset: int | None = None
    folded_norms: int = 0
    lightdet_version: str = ""
    config: dict[str, Any] | None = None
    inputs: list[str] = field(default_factory=lambda: ["images"])

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "") -> ExportMetadata:
        """Parses the record; ``source`` names the file in errors."""
        try:
            payload = json.loads(text)
            return cls(**payload)
        except (json.JSONDecodeError, TypeError) as e:
            raise ValueError(f"{source}: unreadable lightdet export metadata ({e})") from e


def exported_format(path: str | Path) -> str | None:
    """``"onnx"``, ``"torchscript"`` or ``"exported_program"`` for a file written by ``lightdet-export``;
    None for anything else (a checkpoint, an image ...)."""
    path = Path(path)
    if not path.is_file():
        return None
    if path.suffix == ".onnx":
        return "onnx"
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if not any(n.endswith(f"/extra/{EXTRA_FILE}") for n in names):
        return None
    return "exported_program" if any(n.endswith("/archive_format") for n in names) else "torchscript"


def read_metadata(path: str | Path) -> ExportMetadata:
    """The metadata of an exported file (ONNX Runtime reads an ONNX file's; zip archives are read directly).

    Raises:
        ValueError: the file is not a lightdet export.
    """
    path = Path(path)
    fmt = exported_format(path)
    if fmt is None:
        raise ValueError(f"{path}: not a file written by lightdet-export (.onnx, .torchscript or .pt2)")
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        props = session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in props:
            raise ValueError(
                f"{path}: an ONNX file without lightdet metadata (not written by lightdet-export)"
            )
        return ExportMetadata.from_json(props[METADATA_KEY], str(path))
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.endswith(f"/extra/{EXTRA_FILE}"))
        return ExportMetadata.from_json(archive.read(name), str(path))

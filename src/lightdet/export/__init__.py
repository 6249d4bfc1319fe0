"""Export and deployment: a detector as ONNX, TorchScript or ExportedProgram, with the runtimes to run it.

* :func:`export_detector` writes a built detector (BatchNorm folded, pre- and post-processing in the graph,
  metadata inside the file); ``lightdet-export`` does it for a checkpoint.
* :func:`load_export` runs a written file (ONNX Runtime or PyTorch); :class:`ExportedDetector` gives it the
  detector interface, so ``lightdet-test``, ``lightdet-infer`` and ``lightdet.Predictor`` accept it.
* :func:`compare_detections` / :func:`assert_parity` check an export against the eager model.

Nothing here imports ``onnx`` or ``onnxruntime`` until an ONNX file is written or loaded.
"""

from lightdet.export.errors import ExportError, ParityError
from lightdet.export.graph import ExportGraph, GraphHead, SupportsExport, build_graph, build_head
from lightdet.export.metadata import FORMATS, ExportMetadata, exported_format, read_metadata
from lightdet.export.parity import ParityReport, assert_parity, compare_detections
from lightdet.export.runtime import ExportedDetector, ExportedRunner, exported_runner, load_export
from lightdet.export.writers import ExportOptions, export_detector
from lightdet.models.folding import fold_batchnorm

__all__ = [
    "FORMATS",
    "ExportError",
    "ExportGraph",
    "ExportMetadata",
    "ExportOptions",
    "ExportedDetector",
    "ExportedRunner",
    "GraphHead",
    "ParityError",
    "ParityReport",
    "SupportsExport",
    "assert_parity",
    "build_graph",
    "build_head",
    "compare_detections",
    "export_detector",
    "exported_format",
    "exported_runner",
    "fold_batchnorm",
    "load_export",
    "read_metadata",
]

"""Writing a detector as ONNX, TorchScript or ExportedProgram: folding, the graph, the file and its metadata.

All three formats trace the same :class:`~lightdet.export.graph.ExportGraph` on a seeded example batch:
ONNX through ``torch.onnx.export``'s TorchScript-based exporter (``torchvision.ops.nms`` becomes
``NonMaxSuppression``, ``roi_align`` ``RoiAlign``), TorchScript with ``torch.jit.trace`` and ExportedProgram
with ``torch.export.export``.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

import lightdet
from lightdet.export.errors import ExportError
from lightdet.export.graph import ExportGraph, GraphHead, build_graph
from lightdet.export.metadata import EXTRA_FILE, FORMATS, METADATA_KEY, ExportMetadata
from lightdet.models.detr.deformable_attention import MSDeformableAttention
from lightdet.models.folding import fold_batchnorm
from lightdet.models.ops.roi_extractor import MultiLevelRoIAlign

#: Example size traced for a dynamic ExportedProgram: every pyramid level up to stride 128 has two or more rows
#: and columns (``torch.export`` specialises a size-1 dimension), and height and width differ (else it assumes
#: that they are equal).
DYNAMIC_EXAMPLE_SIZE = (320, 416)
#: Example size traced for dynamic ONNX and TorchScript files: tracing records the size arithmetic, so the
#: example only has to run; a small one keeps exporting quick.
TRACE_EXAMPLE_SIZE = (128, 160)
MIN_OPSET = 11


@dataclass(frozen=True)
class ExportOptions:
    """How to export.

    Attributes:
        format: ``onnx``, ``torchscript`` or ``exported_program``.
        dynamic: accept any image height and width (otherwise only ``size``).
        size: ``(height, width)`` of a static export; the example traced for a dynamic one (default
            :data:`DYNAMIC_EXAMPLE_SIZE` for ExportedProgram, :data:`TRACE_EXAMPLE_SIZE` otherwise, enlarged
            for a model that cannot run it, see :meth:`GraphHead.example_size`).
        batch: images per call, fixed.
        opset: ONNX opset (11 or later; RoIAlign with ``aligned=True`` and the DETRs' bilinear sampling need 16).
        half: float16 network on CUDA (normalisation and post-processing stay float32).
        fold_norms: fold inference-time BatchNorm into the convolutions (:mod:`lightdet.models.folding`).
    """

    format: str = "onnx"
    dynamic: bool = True
    size: tuple[int, int] | None = None
    batch: int = 1
    opset: int = 17
    half: bool = False
    fold_norms: bool = True

    def check(self) -> None:
        """Raises :class:`ExportError` naming an unsupported option and why."""
        if self.format not in FORMATS:
            raise ExportError(f"format {self.format!r} is not supported: choose one of {', '.join(FORMATS)}")
        if self.batch < 1:
            raise ExportError(f"batch must be >= 1, got {self.batch}")
        if not self.dynamic and self.size is None:
            raise ExportError("a static export (dynamic=False) needs its image size (--size H W)")
        if self.size is not None and min(self.size) < 1:
            raise ExportError(f"size must be positive (height, width), got {self.size}")
        if self.format == "onnx" and self.opset < MIN_OPSET:
            raise ExportError(
                f"opset {self.opset} is too old: NonMaxSuppression and RoiAlign need opset >= 11"
            )
        if self.half and not torch.cuda.is_available():
            raise ExportError(
                "half=True (--half) needs CUDA: float16 convolutions are not supported on the CPU"
            )

    @property
    def example_size(self) -> tuple[int, int]:
        """The traced example's ``(height, width)``: ``size``, else a default for dynamic exports."""
        if self.size is not None:
            return self.size[0], self.size[1]
        return DYNAMIC_EXAMPLE_SIZE if self.format == "exported_program" else TRACE_EXAMPLE_SIZE


def check_opset(model: nn.Module, opset: int) -> None:
    """RoIAlign with ``aligned=True`` (MMDetection's half-pixel offset) and the DETRs' bilinear deformable
    sampling (``grid_sample``, ONNX GridSample) exist in ONNX from opset 16 on."""
    aligned = [n for n, m in model.named_modules() if isinstance(m, MultiLevelRoIAlign) and m.aligned]
    if aligned and opset < 16:
        raise ExportError(
            f"opset {opset} cannot express RoIAlign(aligned=True) of {', '.join(aligned)}: ONNX added the "
            "half-pixel mode in opset 16; export with --opset 16 or later"
        )
    sampled = [
        n for n, m in model.named_modules() if isinstance(m, MSDeformableAttention) and m.method == "default"
    ]
    if sampled and opset < 16:
        more = f" and {len(sampled) - 1} more" if len(sampled) > 1 else ""
        raise ExportError(
            f"opset {opset} cannot express the bilinear sampling (grid_sample) of {sampled[0]}{more}: ONNX "
            "added GridSample in opset 16; export with --opset 16 or later"
        )


def traced_size(options: ExportOptions, head: GraphHead) -> tuple[int, int]:
    """The example's ``(height, width)``: ``options.size``, else the format's default as the head takes it
    (:meth:`GraphHead.example_size`)."""
    return options.example_size if options.size is not None else head.example_size(options.example_size)


def example_images(options: ExportOptions, size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """A seeded ``uint8 [batch, 3, H, W]`` example batch (its content does not change the traced graph)."""
    generator = torch.Generator().manual_seed(0)
    h, w = size
    return torch.randint(0, 256, (options.batch, 3, h, w), generator=generator, dtype=torch.uint8).to(device)


def prepare_graph(detector: nn.Module, options: ExportOptions) -> tuple[ExportGraph, int]:
    """An eval-mode copy of ``detector`` with its norms folded, wrapped in its graph; and the folded count."""
    model = copy.deepcopy(detector).cpu().eval()
    folded = fold_batchnorm(model) if options.fold_norms else 0
    graph = build_graph(model, half=options.half)
    if options.half:
        graph = graph.cuda()
        graph.head.half()
        graph.preprocessor.float()
    return graph, folded


def export_detector(
    detector: nn.Module,
    path: str | Path,
    options: ExportOptions,
    *,
    class_names: Sequence[str],
    input_size: dict | None = None,
    config: dict | None = None,
) -> ExportMetadata:
    """Writes ``detector`` to ``path`` in ``options.format`` with its metadata; returns the metadata.

    Args:
        class_names: the name of each label.
        input_size: how the test pipeline sizes images (``{"resize": ...}``, see
            :mod:`lightdet.export.metadata`); ``size_divisor``, ``batch``, ``dynamic`` and ``example_size`` are
            filled in here.
        config: the composed lightdet config to store (lets ``lightdet-test`` evaluate the file).
    """
    options.check()
    if options.format == "exported_program" and Path(path).suffix != ".pt2":
        raise ExportError(
            f"{path}: an exported_program file must end in .pt2 (torch.export.load requires it)"
        )
    if options.format == "onnx":
        check_opset(detector, options.opset)
    graph, folded = prepare_graph(detector, options)
    size = traced_size(options, graph.head)
    metadata = ExportMetadata(
        family=graph.head.family,
        format=options.format,
        class_names=list(class_names),
        outputs=list(graph.output_names),
        score_threshold=graph.head.score_threshold,
        input_size={
            "resize": None,
            **(input_size or {}),
            "size_divisor": graph.preprocessor.size_divisor,
            "batch": options.batch,
            "dynamic": options.dynamic or options.format == "torchscript",
            "example_size": list(size),
        },
        mask=_mask_spec(detector) if graph.head.mask_size is not None else None,
        half=options.half,
        device="cuda" if options.half else "cpu",
        opset=options.opset if options.format == "onnx" else None,
        folded_norms=folded,
        lightdet_version=lightdet.__version__,
        config=config,
    )
    example = example_images(options, size, next(graph.parameters()).device)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    writer = {
        "onnx": write_onnx,
        "torchscript": write_torchscript,
        "exported_program": write_exported_program,
    }
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python values are expected and harmless here
        writer[options.format](graph, example, Path(path), metadata, options)
    return metadata


def _mask_spec(detector: nn.Module) -> dict:
    """How the ``masks`` output is pasted: the last mask head's size, threshold and geometry."""
    from lightdet.models.roi_heads.mask_head import FCNMaskHead

    head = [m for m in detector.modules() if isinstance(m, FCNMaskHead)][-1]
    return {"size": head.mask_size, "threshold": float(head.mask_thr), "paste_mode": head.paste_mode}


def write_onnx(
    graph: ExportGraph, example: torch.Tensor, path: Path, metadata: ExportMetadata, options: ExportOptions
) -> None:
    """ONNX via the TorchScript-based exporter, then the metadata into ``metadata_props``."""
    import onnx

    names = list(graph.output_names)
    axes = {name: {0: "detections"} for name in names}
    if options.dynamic:
        axes["images"] = {2: "height", 3: "width"}
    torch.onnx.export(
        graph,
        (example,),
        str(path),
        dynamo=False,
        opset_version=options.opset,
        input_names=["images"],
        output_names=names,
        dynamic_axes=axes,
    )
    model = onnx.load(str(path))
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, metadata.to_json()
    onnx.save(model, str(path))


def write_torchscript(
    graph: ExportGraph, example: torch.Tensor, path: Path, metadata: ExportMetadata, options: ExportOptions
) -> None:
    """``torch.jit.trace`` (sizes stay symbolic in the traced graph), metadata as an extra file."""
    traced = torch.jit.trace(graph, (example,), check_trace=False)
    torch.jit.save(traced, str(path), _extra_files={EXTRA_FILE: metadata.to_json()})


def write_exported_program(
    graph: ExportGraph, example: torch.Tensor, path: Path, metadata: ExportMetadata, options: ExportOptions
) -> None:
    """``torch.export.export`` (non-strict; height and width dynamic when asked), metadata as an extra file."""
    from torch.export import Dim

    shapes = {"images": {2: Dim.AUTO, 3: Dim.AUTO}} if options.dynamic else None
    program = torch.export.export(graph, (example,), dynamic_shapes=shapes, strict=False)
    torch.export.save(program, str(path), extra_files={EXTRA_FILE: metadata.to_json()})

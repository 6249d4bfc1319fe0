"""Running exported files: ONNX Runtime for ``.onnx``, PyTorch for TorchScript and ExportedProgram files.

:func:`load_export` returns a runner, ``runner(images uint8 [B, 3, H, W]) -> {output name: tensor}``.
:class:`ExportedDetector` turns a runner into what the rest of lightdet expects of a detector,
``predict(DetBatch) -> list[Detections]`` in each original image's pixels (masks pasted there as the eager
mask heads paste them), so ``lightdet-test``, ``lightdet-infer`` and :class:`lightdet.Predictor` run exported
files through the same pipeline and evaluator as checkpoints.

ONNX Runtime is imported when an ONNX file is loaded, never at ``import lightdet``.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor, nn

from lightdet.export.metadata import EXTRA_FILE, METADATA_KEY, ExportMetadata, exported_format
from lightdet.models.detectors.base import to_original
from lightdet.models.ops.masks import paste_in_original
from lightdet.structures import DetBatch, Detections, ImageMeta

if TYPE_CHECKING:
    from omegaconf import DictConfig


class ExportedRunner(ABC):
    """A loaded exported file: ``runner(images)`` -> ``{name: CPU tensor}`` (``boxes``, ``scores``, ...).

    Attributes:
        path: the file.
        metadata: its :class:`~lightdet.export.metadata.ExportMetadata`.
    """

    #: what runs the file: ``onnxruntime``, ``torchscript`` or ``exported_program``
    backend: str

    def __init__(self, path: Path, metadata: ExportMetadata) -> None:
        self.path, self.metadata = path, metadata

    @property
    def batch_size(self) -> int:
        """Images per call (the export's fixed batch)."""
        return int(self.metadata.input_size["batch"])

    def check_input(self, images: Tensor) -> None:
        """Rejects a tensor this export cannot take, saying why (before the runtime's own, terser error)."""
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(
                f"{self.path.name}: expects uint8 [B, 3, H, W] images, got {images.dtype} "
                f"{tuple(images.shape)}"
            )
        if images.shape[0] != self.batch_size:
            raise ValueError(
                f"{self.path.name}: exported for batches of {self.batch_size}, got {images.shape[0]}"
            )
        size = self.metadata.input_size
        if not size["dynamic"] and list(images.shape[-2:]) != list(size["example_size"]):
            raise ValueError(
                f"{self.path.name}: exported for {size['example_size'][0]}x{size['example_size'][1]} images only, "
                f"got {images.shape[-2]}x{images.shape[-1]} (export with --dynamic for other sizes)"
            )

    def __call__(self, images: Tensor) -> dict[str, Tensor]:
        self.check_input(images)
        return self.run(images)

    def as_detector(self) -> ExportedDetector:
        """This runner behind the detector interface (``predict(DetBatch)``)."""
        return ExportedDetector(self)

    def stored_config(self) -> DictConfig:
        """The composed lightdet config the file carries (backbone download switched off).

        Raises:
            ValueError: the file was exported without one (from a bare model rather than a checkpoint).
        """
        from lightdet.composition import config_from_container

        if self.metadata.config is None:
            raise ValueError(
                f"{self.path}: exported without a lightdet config; export a checkpoint to evaluate it"
            )
        cfg = config_from_container(self.metadata.config)
        if cfg.model.get("backbone") is not None and cfg.model.backbone.get("weights") is not None:
            cfg.model.backbone.weights = None  # the exported graph holds the weights: nothing to download
        return cfg

    @abstractmethod
    def run(self, images: Tensor) -> dict[str, Tensor]:
        """The graph's outputs by name, as CPU tensors."""


class OnnxRuntimeRunner(ExportedRunner):
    """An ``.onnx`` file in an ONNX Runtime session (CUDA provider when asked for and installed)."""

    backend = "onnxruntime"

    def __init__(
        self,
        path: Path,
        *,
        device: str = "cpu",
        threads: int | None = None,
        session_config: Mapping[str, str] | None = None,
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        for key, value in (session_config or {}).items():
            options.add_session_config_entry(key, value)
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        props = self.session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in props:
            raise ValueError(
                f"{path}: an ONNX file without lightdet metadata (not written by lightdet-export)"
            )
        super().__init__(path, ExportMetadata.from_json(props[METADATA_KEY], str(path)))

    def run(self, images: Tensor) -> dict[str, Tensor]:
        outputs = self.session.run(None, {"images": np.ascontiguousarray(images.cpu().numpy())})
        names = [o.name for o in self.session.get_outputs()]
        return {name: torch.from_numpy(value) for name, value in zip(names, outputs)}


class TorchRunner(ExportedRunner):
    """A TorchScript or ExportedProgram file, run by PyTorch on the device it was exported on."""

    def __init__(self, path: Path, fmt: str) -> None:
        extra = {EXTRA_FILE: ""}
        if fmt == "torchscript":
            with (
                warnings.catch_warnings()
            ):  # PyTorch's deprecation notice of TorchScript, chosen knowingly here
                warnings.simplefilter("ignore", FutureWarning)
                self.module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        else:
            self.module = torch.export.load(str(path), extra_files=extra).module()
        super().__init__(path, ExportMetadata.from_json(extra[EXTRA_FILE], str(path)))
        self.backend = fmt
        self.device = torch.device(self.metadata.device)
        if fmt == "torchscript":
            self.module = self.module.to(self.device)

    @torch.inference_mode()
    def run(self, images: Tensor) -> dict[str, Tensor]:
        outputs = self.module(images.to(self.device))
        return {name: value.cpu() for name, value in zip(self.metadata.outputs, outputs)}


def load_export(
    path: str | Path,
    *,
    device: str = "cpu",
    threads: int | None = None,
    session_config: Mapping[str, str] | None = None,
) -> ExportedRunner:
    """Loads a file written by ``lightdet-export`` with the runtime of its format.

    Args:
        device: ONNX files: ``cuda`` uses ONNX Runtime's CUDA provider when installed. PyTorch files run
            where they were exported (their graphs hold that device).
        threads: ONNX Runtime intra-op threads (None: its default, all cores).
        session_config: ONNX Runtime session config entries, e.g.
            ``{"session.intra_op.allow_spinning": "0"}`` on a machine shared with other work.
    """
    path = Path(path)
    fmt = exported_format(path)
    if fmt is None:
        raise ValueError(f"{path}: not a file written by lightdet-export (.onnx, .torchscript or .pt2)")
    if fmt == "onnx":
        return OnnxRuntimeRunner(path, device=device, threads=threads, session_config=session_config)
    return TorchRunner(path, fmt)


def exported_runner(path: str | Path, *, device: str = "cpu") -> ExportedRunner | None:
    """:func:`load_export` for a file written by ``lightdet-export``; None for anything else (a checkpoint)."""
    return load_export(path, device=device) if exported_format(path) is not None else None


def split_images(outputs: dict[str, Tensor], count: int) -> list[dict[str, Tensor]]:
    """Flat outputs with ``batch_index`` -> one ``{name: tensor}`` per image (rows keep their order)."""
    index = outputs["batch_index"]
    return [{k: v[index == i] for k, v in outputs.items() if k != "batch_index"} for i in range(count)]


def _same_size_chunks(sizes: Sequence[tuple[int, int]], chunk: int, source: str) -> list[list[int]]:
    """Image indices in runs of ``chunk`` (the last one may be shorter) whose images share their size."""
    groups = [list(range(i, min(i + chunk, len(sizes)))) for i in range(0, len(sizes), chunk)]
    for group in groups:
        if len({tuple(sizes[i]) for i in group}) > 1:
            raise ValueError(
                f"{source}: exported for batches of {chunk} images of one size, got sizes "
                f"{[tuple(sizes[i]) for i in group]}; export with --batch 1 to run images of different sizes"
            )
    return groups


class ExportedDetector(nn.Module):
    """An exported file behind the detector interface: ``predict(DetBatch) -> list[Detections]``.

    Each image's valid region (``meta.img_size``) is cut from the batch and run (the export's batch size at a
    time; a short last group is filled with copies of its last image, whose results are dropped); boxes are
    mapped to the original image and masks pasted there, as the eager detectors do.
    """

    def __init__(self, runner: ExportedRunner) -> None:
        super().__init__()
        self.runner = runner
        self.metadata = runner.metadata
        self.backend = runner.backend

    def forward(self, batch: DetBatch) -> list[Detections]:
        return self.predict(batch)

    @torch.inference_mode()
    def predict(self, batch: DetBatch) -> list[Detections]:
        images = batch.images.cpu()
        sizes = [m.img_size for m in batch.metas]
        out: list[Detections] = []
        for group in _same_size_chunks(sizes, self.runner.batch_size, self.runner.path.name):
            h, w = sizes[group[0]]
            chunk = [images[i, :, :h, :w] for i in group]
            chunk += [chunk[-1]] * (self.runner.batch_size - len(chunk))
            per_image = split_images(self.runner(torch.stack(chunk)), len(chunk))
            out += [self._detections(per_image[k], batch.metas[i]) for k, i in enumerate(group)]
        return out

    def _detections(self, outputs: dict[str, Tensor], meta: ImageMeta) -> Detections:
        """One image's outputs (input pixels) -> :class:`Detections` in the original image's pixels."""
        boxes = outputs["boxes"].float()
        masks = None
        if self.metadata.mask is not None:
            spec = self.metadata.mask
            masks = paste_in_original(
                outputs["masks"].float(), boxes, meta, threshold=spec["threshold"], mode=spec["paste_mode"]
            )
        det = Detections(
            boxes=boxes, scores=outputs["scores"].float(), labels=outputs["labels"].long(), masks=masks
        )
        return to_original(det, meta)

"""The export wrapper: a detector behind one fixed tensor signature, pre- and post-processing inside.

``ExportGraph(images)`` takes ``uint8 [B, 3, H, W]`` RGB images (a batch shares one size), normalises and pads
them as the detector's :class:`~lightdet.models.DetPreprocessor` does, runs the detector and its test-time
post-processing (NMS included), and returns flat detections in the pixels of the images it was given:

* ``boxes``  ``float32 [N, 4]`` xyxy, clipped to ``W x H``;
* ``scores`` ``float32 [N]``;
* ``labels`` ``int64 [N]`` in ``0..K-1``;
* ``batch_index`` ``int64 [N]``: the image of each row (rows of one image are sorted by score);
* ``masks`` (mask models only) ``float32 [N, M, M]``: each detection's mask probabilities over its box, to
  be pasted into the image (:func:`lightdet.models.ops.masks.paste_masks`); pasting in the graph would make
  an ``N x H x W`` float tensor per image.

The part after normalisation is a :class:`GraphHead`, one per detector family. The R-CNNs, RetinaNet and
FCOS are built in (:func:`build_head`); any other detector plugs in by implementing :class:`SupportsExport`:
``export_head()`` returns its own :class:`GraphHead`. The real-time DETRs do so
(:class:`~lightdet.export.detr.DETRGraphHead`): NMS-free, their head ends with
:func:`lightdet.export.ops.query_topk`::

    class DETRGraphHead(GraphHead):
        def forward(self, images, height, width):
            out, _ = self.detector.forward_decoder(images, all_layers=False)
            logits, boxes = out.logits[-1], out.boxes[-1]  # [B, Q, K], normalised cxcywh [B, Q, 4]
            return query_topk(logits, boxes, self.detector.num_top_queries, images.shape[-2], images.shape[-1])
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol, runtime_checkable

import torch.nn.functional as F
from torch import Tensor, nn

from lightdet.export.errors import ExportError
from lightdet.export.ops import Size
from lightdet.models.preprocessor import DetPreprocessor

OUTPUT_NAMES = ("boxes", "scores", "labels", "batch_index")
MASK_OUTPUT = "masks"


class GraphHead(nn.Module, ABC):
    """A detector after normalisation: padded float images -> flat detections (see the module docstring).

    Attributes:
        family: a short name written into the export's metadata (``faster_rcnn``, ``retinanet``, ...).
        score_threshold: the minimum score of a returned detection (recorded in the metadata).
        mask_size: ``M`` of the ``masks`` output, or None for a model without masks.
    """

    family: str = "detector"
    score_threshold: float = 0.0
    mask_size: int | None = None

    def example_size(self, default: tuple[int, int]) -> tuple[int, int]:
        """The ``(height, width)`` to trace a dynamic export at when none is given: ``default`` (the format's
        example), or a larger size for a model that cannot run ``default`` (see :mod:`lightdet.export.detr`)."""
        return default

    @abstractmethod
    def forward(self, images: Tensor, height: Size, width: Size) -> tuple[Tensor, ...]:
        """``images [B, 3, H', W']`` normalised and padded, ``(height, width)`` their valid size ->
        ``(boxes, scores, labels, batch_index)`` (+ ``masks`` when ``mask_size`` is set)."""


@runtime_checkable
class SupportsExport(Protocol):
    """A detector that builds its own export graph head (families not built into :func:`build_head`)."""

    def export_head(self) -> GraphHead:
        """The detector's :class:`GraphHead`, sharing the detector's modules."""


class ExportGraph(nn.Module):
    """``uint8 [B, 3, H, W]`` -> ``(boxes, scores, labels, batch_index[, masks])`` (module docstring).

    Args:
        preprocessor: the detector's normaliser (mean, std, channel order, size divisor).
        head: the family's :class:`GraphHead`.
        half: run the network in float16 (normalisation and post-processing stay float32).
    """

    def __init__(self, preprocessor: DetPreprocessor, head: GraphHead, *, half: bool = False) -> None:
        super().__init__()
        self.preprocessor = preprocessor
        self.head = head
        self.half = half

    @property
    def output_names(self) -> tuple[str, ...]:
        return OUTPUT_NAMES + ((MASK_OUTPUT,) if self.head.mask_size is not None else ())

    def normalise(self, images: Tensor) -> Tensor:
        """``uint8 [B, 3, H, W]`` -> normalised float, zero-padded to the size divisor (bottom and right)."""
        p = self.preprocessor
        x = (images.float() - p.mean) / p.std
        if p.to_bgr:
            x = x.flip(1)
        h, w = images.shape[-2:]
        d = p.size_divisor
        x = F.pad(x, (0, (-w) % d, 0, (-h) % d))
        return x.half() if self.half else x

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        height, width = images.shape[-2:]
        return self.head(self.normalise(images), height, width)


def build_head(detector: nn.Module) -> GraphHead:
    """The :class:`GraphHead` of a built detector (its modules shared, not copied).

    Raises:
        ExportError: for a detector, head or option with no export graph, naming it and why.
    """
    from lightdet.export.single_stage import single_stage_head
    from lightdet.export.two_stage import TwoStageGraphHead
    from lightdet.models.detectors import SingleStageDetector, TwoStageDetector

    if isinstance(detector, SupportsExport):
        return detector.export_head()
    if isinstance(detector, TwoStageDetector):
        return TwoStageGraphHead(detector)
    if isinstance(detector, SingleStageDetector):
        return single_stage_head(detector)
    raise ExportError(
        f"{type(detector).__name__} cannot be exported: there is no export graph for it. Supported: "
        "TwoStageDetector (Faster / Mask / Cascade (Mask) R-CNN), SingleStageDetector with a RetinaHead, "
        "FCOSHead or RTMDetHead, RTDETR (RT-DETR, RT-DETRv2, D-FINE) and any detector implementing "
        "lightdet.export.SupportsExport (export_head())"
    )


def build_graph(detector: nn.Module, *, half: bool = False) -> ExportGraph:
    """Wraps an eval-mode detector into an :class:`ExportGraph` (see :func:`build_head`)."""
    preprocessor = getattr(detector, "preprocessor", None)
    if not isinstance(preprocessor, DetPreprocessor):
        raise ExportError(
            f"{type(detector).__name__} cannot be exported: its preprocessor is "
            f"{type(preprocessor).__name__}, the graph needs a DetPreprocessor (mean, std, size divisor)"
        )
    return ExportGraph(preprocessor, build_head(detector), half=half).eval()

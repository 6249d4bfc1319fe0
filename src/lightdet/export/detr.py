"""Export graph of the real-time DETRs (:class:`~lightdet.models.RTDETR`: RT-DETR, RT-DETRv2, D-FINE).

The network runs as in :meth:`RTDETR.predict <lightdet.models.RTDETR.predict>` (the evaluated decoder layer
only, no denoising queries); the post-processing is NMS-free: sigmoid scores, the top ``num_top_queries``
(query, class) pairs per image, normalised cxcywh boxes to xyxy pixels (:func:`~lightdet.export.ops.query_topk`).

Boxes are normalised by the padded input tensor, as in training and in ``predict``, so they are scaled back by
the padded size (the image the graph was given, rounded up to the size divisor; the 640 x 640 recipes pad
nothing), then clipped to the image the graph was given (``predict`` clips them to the original image, which
the runner does after mapping them there). There is no score threshold. The hybrid encoder's positions and
the query selection's anchors are computed from the feature sizes inside the graph, so a dynamic-shape file
takes any size the eager model takes.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from torch import Tensor

from lightdet.export.graph import GraphHead
from lightdet.export.ops import Size, clip_to_image, query_topk

if TYPE_CHECKING:
    from lightdet.models.detr.detector import RTDETR


def memory_cells(strides: list[int], height: int, width: int) -> int:
    """The number of feature-map cells of an input of ``height x width`` over levels of these strides."""
    return sum(math.ceil(height / s) * math.ceil(width / s) for s in strides)


class DETRGraphHead(GraphHead):
    """``images [B, 3, H', W']`` normalised and padded -> the top ``num_top_queries`` detections per image.

    ``family`` is ``dfine`` for a decoder with fine-grained distribution refinement, else ``rtdetr``.
    """

    def __init__(self, detector: RTDETR) -> None:
        super().__init__()
        self.detector = detector
        self.family = "dfine" if detector.decoder.fdr is not None else "rtdetr"

    def memory_strides(self) -> list[int]:
        """The strides of the decoder's memory levels: the encoder's, then each extra level twice the last."""
        strides = list(self.detector.encoder.strides)
        while len(strides) < len(self.detector.decoder.input_proj):
            strides.append(2 * strides[-1])
        return strides

    def example_size(self, default: tuple[int, int]) -> tuple[int, int]:
        """``default`` doubled until its feature maps have a cell for each of the decoder's queries (the query
        selection picks ``num_queries`` of them: D-FINE-N's two levels have 100 cells at 128 x 160, too few
        for its 300 queries, so the eager model cannot run that size either)."""
        h, w = default
        while memory_cells(self.memory_strides(), h, w) < self.detector.decoder.num_queries:
            h, w = 2 * h, 2 * w
        return h, w

    def forward(self, images: Tensor, height: Size, width: Size) -> tuple[Tensor, ...]:
        out, _ = self.detector.forward_decoder(images, all_layers=False)
        # [B, Q, K] logits and [B, Q, 4] normalised cxcywh boxes of the evaluated layer
        logits, boxes = out.logits[-1], out.boxes[-1]
        boxes, scores, labels, batch = query_topk(
            logits, boxes, self.detector.num_top_queries, images.shape[-2], images.shape[-1]
        )
        return clip_to_image(boxes, height, width), scores, labels, batch

"""A detector outside the built-in families plugs in through SupportsExport: here a toy NMS-free,
DETR-like model (queries, sigmoid classes, normalised cxcywh boxes, top-k over queries x classes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from export_builders import image_batches
from torch import Tensor, nn

from lightdet.export import GraphHead, SupportsExport, assert_parity, load_export, read_metadata
from lightdet.export.ops import Size, query_topk
from lightdet.export.writers import ExportOptions, export_detector
from lightdet.models import Detector, DetPreprocessor
from lightdet.models.detectors import to_original
from lightdet.structures import DetBatch, Detections

TOP_K = 12


class ToyQueryDetector(Detector):
    """16 queries of 16 channels from one pooled conv; eager post-processing written apart from ``query_topk``."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__(DetPreprocessor())
        self.conv = nn.Conv2d(3, 16 * 16, 8, stride=8)
        self.cls = nn.Linear(16, num_classes)
        self.box = nn.Linear(16, 4)

    def queries(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """``[B, 3, H, W]`` -> logits ``[B, 16, K]`` and normalised cxcywh boxes ``[B, 16, 4]``."""
        x = torch.relu(self.conv(images)).mean((2, 3)).unflatten(1, (16, 16))  # [B, 256] -> [B, Q, C]
        return self.cls(x), self.box(x).sigmoid()

    def loss(self, batch: DetBatch) -> dict[str, Tensor]:
        logits, _ = self.queries(self.preprocess(batch)[0])
        return {"loss": logits.sigmoid().mean()}

    @torch.no_grad()
    def predict(self, batch: DetBatch) -> list[Detections]:
        images, _ = self.preprocess(batch)
        logits, boxes = self.queries(images)
        h, w = images.shape[-2:]
        out = []
        for lg, bx, meta in zip(logits, boxes, batch.metas):
            scores, index = lg.sigmoid().flatten().topk(TOP_K)
            query, labels = index // lg.shape[1], index % lg.shape[1]
            cx, cy, bw, bh = bx[query].unbind(-1)
            xyxy = torch.stack(
                [(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h], -1
            )
            out.append(to_original(Detections(boxes=xyxy, scores=scores, labels=labels), meta))
        return out

    def export_head(self) -> GraphHead:
        return ToyGraphHead(self)


class ToyGraphHead(GraphHead):
    family = "toy_detr"

    def __init__(self, detector: ToyQueryDetector) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, images: Tensor, height: Size, width: Size) -> tuple[Tensor, ...]:
        logits, boxes = self.detector.queries(images)
        return query_topk(logits, boxes, TOP_K, images.shape[-2], images.shape[-1])


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_nms_free_detector_exports_through_its_own_head(fmt: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ToyQueryDetector().eval()
    assert isinstance(model, SupportsExport)
    path = tmp_path / f"toy.{fmt}"
    export_detector(model, path, ExportOptions(format=fmt), class_names=list("abcde"))
    assert read_metadata(path).family == "toy_detr"
    batches = image_batches()
    reference = [d for b in batches for d in model.predict(b)]
    candidate = [d for b in batches for d in load_export(path).as_detector().predict(b)]
    report = assert_parity(reference, candidate)
    assert report.total == 2 * TOP_K == report.matched

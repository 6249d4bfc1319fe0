"""Sliced inference: tiles that cover the image, cut boxes dropped, and small objects found in a large image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn
from torchvision.ops import box_iou

from lightdet.data.transforms import Compose, Resize
from lightdet.inference import Predictor
from lightdet.models.detectors.base import to_original
from lightdet.slicing import predict_sliced, tile_windows
from lightdet.structures import DetBatch, Detections

MODEL_SIZE = 256  # the test pipeline resizes every input (image or tile) to fit 256 x 256
MIN_PIXELS = 6  # the model finds a blob only if it spans this many pixels of its input


class BlobDetector(nn.Module):
    """Finds every bright blob spanning at least :data:`MIN_PIXELS` of the model input: like a real detector,
    it misses objects that the resize to the model's scale has shrunk too far."""

    def predict(self, batch: DetBatch) -> list[Detections]:
        out = []
        for image, meta in zip(batch.images, batch.metas):
            h, w = meta.img_size
            labelled, _ = ndimage.label((image[0, :h, :w] > 128).numpy())
            boxes = [[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in ndimage.find_objects(labelled)]
            boxes = [b for b in boxes if min(b[2] - b[0], b[3] - b[1]) >= MIN_PIXELS]
            det = Detections(
                boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                scores=torch.full((len(boxes),), 0.9), labels=torch.zeros(len(boxes), dtype=torch.int64),
            )  # fmt: skip
            out.append(to_original(det, meta))
        return out


def _large_image(size: int = 1536, objects: int = 36, side: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """A dark ``size x size`` image with ``objects`` bright ``side``-pixel squares on a jittered grid."""
    rng = np.random.default_rng(0)
    image = torch.full((3, size, size), 30, dtype=torch.uint8)
    per_row = int(np.sqrt(objects))
    cell = size // per_row
    boxes = []
    for i in range(objects):
        x = (i % per_row) * cell + int(rng.integers(4, cell - side - 4))
        y = (i // per_row) * cell + int(rng.integers(4, cell - side - 4))
        image[:, y : y + side, x : x + side] = 230
        boxes.append([x, y, x + side, y + side])
    return image, torch.tensor(boxes, dtype=torch.float32)


def _recall(found: Detections, truth: torch.Tensor) -> float:
    if len(found) == 0:
        return 0.0
    return float((box_iou(truth, found.boxes).max(dim=1).values >= 0.5).float().mean())


def test_sliced_inference_finds_the_small_objects_the_whole_image_misses() -> None:
    image, truth = _large_image()
    predictor = Predictor(BlobDetector(), Compose([Resize((MODEL_SIZE, MODEL_SIZE))]), ["blob"])
    whole = predictor.predict(image)
    sliced = predictor.predict(image, slice=384, overlap=0.25, batch_size=4)
    # 16 px squares are 2.7 px at 256/1536 (missed) and 10.7 px in 384-pixel tiles resized to 256 (found)
    assert _recall(whole, truth) < 0.1
    assert _recall(sliced, truth) == 1.0
    assert len(sliced) == len(truth)  # an object seen by several overlapping tiles is reported once
    assert torch.allclose(sliced.boxes[sliced.boxes[:, 1].argsort()][:1], truth[truth[:, 1].argsort()][:1], atol=3)


def test_objects_larger_than_a_tile_come_from_the_whole_image() -> None:
    image = torch.full((3, 1024, 1024), 30, dtype=torch.uint8)
    image[:, 100:900, 200:700] = 230  # larger than any 256-pixel tile: every tile sees it cut
    predictor = Predictor(BlobDetector(), Compose([Resize((MODEL_SIZE, MODEL_SIZE))]), ["blob"])
    found = predictor.predict(image, slice=256, overlap=0.2)
    assert len(found) == 1
    assert torch.allclose(found.boxes, torch.tensor([[200.0, 100.0, 700.0, 900.0]]), atol=6)


def test_tiles_cover_the_image_with_the_asked_overlap() -> None:
    windows = tile_windows(1000, 700, 512, overlap=0.2)
    covered = torch.zeros(1000, 700, dtype=torch.bool)
    for x0, y0, x1, y1 in windows:
        assert x1 - x0 <= 512 and y1 - y0 <= 512
        covered[y0:y1, x0:x1] = True
    assert covered.all()
    assert sorted({w[1] for w in windows}) == [0, 410, 488]  # stride round(512 * 0.8), last flush with the end
    assert tile_windows(100, 80, 512) == [(0, 0, 80, 100)]  # smaller than a tile: one window, the image
    with pytest.raises(ValueError, match="overlap"):
        tile_windows(100, 100, 50, overlap=1.0)


def test_predict_sliced_merges_tiles_and_whole_image() -> None:
    image, truth = _large_image(size=768, objects=9, side=12)
    calls: list[int] = []

    def predict(images: list[torch.Tensor]) -> list[Detections]:
        calls.append(len(images))
        return BlobDetector().predict(DetBatch.collate([_sample(im) for im in images]))

    found = predict_sliced(predict, image, 256, overlap=0.0)
    assert calls == [9 + 1]  # nine tiles and the whole image, in one call
    assert _recall(found, truth) == 1.0


def _sample(image: torch.Tensor):
    from lightdet.structures import DetSample, ImageMeta

    hw = (int(image.shape[1]), int(image.shape[2]))
    empty = torch.zeros((0, 4), dtype=torch.float32)
    return DetSample(image.contiguous(), empty, torch.zeros(0, dtype=torch.int64), ImageMeta(0, "t", hw, hw))

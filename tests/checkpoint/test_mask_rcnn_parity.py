"""Acceptance: torchvision's Mask R-CNN weights, converted, give torchvision's detections and masks.

Seeded random weights (no download), spread out as in the Faster R-CNN parity test so that many detections of
several classes pass the score threshold; one 320 px image that torchvision's transform does not resize.
"""


import pytest
import torch
from parity_helpers import smooth_image, two_stage_reference
from torchvision.models.detection import maskrcnn_resnet50_fpn

from lightdet.checkpoint import build_model, convert
from lightdet.structures import DetBatch, DetSample, ImageMeta

ARCH = "maskrcnn_resnet50_fpn"
SIZE = (320, 288)


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``[N, H, W]`` x ``[N, H, W]`` bool -> ``[N]`` IoU (1 where both are empty)."""
    inter = (a & b).flatten(1).sum(1).float()
    union = (a | b).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


@pytest.mark.slow
def test_converted_torchvision_mask_rcnn_reproduces_torchvision(tmp_path):
    reference = two_stage_reference(maskrcnn_resnet50_fpn, tmp_path / "tv.pth", min_size=288, max_size=320)
    ours = build_model("torchvision", ARCH, device="cpu").eval()
    loaded = torch.load(tmp_path / "tv.pth", map_location="cpu", weights_only=True)
    state, report, _ = convert("torchvision", ARCH, loaded, target=ours.state_dict())
    assert report.ok, report.summary()
    ours.load_state_dict(state, strict=True)

    image = smooth_image(*SIZE, torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference([image.float() / 255])[0]
    meta = ImageMeta(0, "0.jpg", SIZE, SIZE)
    no_boxes, no_labels = torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64)
    sample = DetSample(image=image, boxes=no_boxes, labels=no_labels, meta=meta)
    det = ours.predict(DetBatch.collate([sample]))[0]

    assert len(det) == len(expected["boxes"]) > 10 and len(expected["labels"].unique()) > 1
    torch.testing.assert_close(det.boxes, expected["boxes"], atol=1e-2, rtol=0)
    torch.testing.assert_close(det.scores, expected["scores"], atol=1e-4, rtol=0)
    assert torch.equal(det.labels, expected["labels"] - 1)
    ref_masks = expected["masks"][:, 0] > 0.5
    assert det.masks is not None and det.masks.dtype == torch.bool and det.masks.shape == ref_masks.shape
    assert (ref_masks.flatten(1).sum(1) > 20).float().mean() > 0.5  # mostly non-trivial masks
    assert mask_iou(det.masks, ref_masks).min() >= 0.99

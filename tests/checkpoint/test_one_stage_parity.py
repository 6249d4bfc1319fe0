"""Acceptance: torchvision's RetinaNet and FCOS weights, converted, give torchvision's detections.

The reference models have seeded random weights (no download). Their class layers are spread out
(logits of std ~2, bias 0) so that many scores pass the thresholds instead of all sitting at the 0.01 prior
(without saturating at 1, where ties would make the order arbitrary), and the
unused background slot 0 is switched off (bias -100) as training does to it. Image sizes need no resize in
torchvision's transform; 320 px is not a multiple of 128, so torchvision's P7 placement stride
(320 // 3 = 106) is exercised.
"""

from pathlib import Path

import pytest
import torch
from parity_helpers import randomize_norms, smooth_image, unlabelled_batch
from torch import nn
from torchvision.models.detection import fcos_resnet50_fpn, retinanet_resnet50_fpn

from lightdet.checkpoint import build_model, convert

SIZES = [(256, 320), (256, 256)]


def spread_weights(model: nn.Module, cls_logits: nn.Conv2d, cls_std: float) -> None:
    randomize_norms(model, (nn.BatchNorm2d, nn.GroupNorm), weight_high=1.5)
    with torch.no_grad():
        cls_logits.weight.normal_(0, cls_std)
        cls_logits.bias.zero_()
        num_anchors = cls_logits.out_channels // 91
        cls_logits.bias.view(num_anchors, 91)[:, 0] = -100.0  # background slot: never a positive


def smooth_images(g: torch.Generator) -> list[torch.Tensor]:
    return [smooth_image(h, w, g) for h, w in SIZES]


def converted_model(arch: str, reference: nn.Module, path: Path) -> nn.Module:
    torch.save(reference.state_dict(), path)
    ours = build_model("torchvision", arch, device="cpu").eval()
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    state, report, _ = convert("torchvision", arch, loaded, target=ours.state_dict())
    assert report.ok, report.summary()
    ours.load_state_dict(state, strict=True)
    return ours


def check_same_detections(reference: nn.Module, ours: nn.Module, min_count: int) -> None:
    images = smooth_images(torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = reference([im.float() / 255 for im in images])
    batch = unlabelled_batch(images)
    detections = ours.predict(batch)
    for ref, det in zip(expected, detections):
        assert len(det) == len(ref["boxes"]) >= min_count
        assert len(ref["labels"].unique()) > 5
        # Scores in the same order; boxes and labels order-free, since near-equal scores may swap places.
        torch.testing.assert_close(det.scores, ref["scores"], atol=1e-4, rtol=0)
        assert same_labelled_boxes(det.boxes, det.labels, ref["boxes"], ref["labels"] - 1, tol=1e-2)


def same_labelled_boxes(boxes: torch.Tensor, labels: torch.Tensor, ref_boxes: torch.Tensor,
                        ref_labels: torch.Tensor, tol: float) -> bool:
    """Every (box, label) of one set has a partner in the other: same label, coordinates within ``tol``.

    torchvision's label is the COCO id, ours that id - 1 (the caller shifts it).
    """
    d = (boxes[:, None, :] - ref_boxes[None, :, :]).abs().amax(-1)
    close = (d < tol) & (labels[:, None] == ref_labels[None, :])
    return bool(close.any(1).all() and close.any(0).all())


def test_retinanet_matches_torchvision(tmp_path):
    torch.manual_seed(0)
    reference = retinanet_resnet50_fpn(weights=None, weights_backbone=None, min_size=256, max_size=320).eval()
    head = reference.head
    # towers without a norm: large features, so small class weights
    spread_weights(reference, head.classification_head.cls_logits, 0.003)
    with torch.no_grad():
        head.regression_head.bbox_reg.weight.normal_(0, 0.002)
    ours = converted_model("retinanet_resnet50_fpn", reference, tmp_path / "retina.pth")
    check_same_detections(reference, ours, min_count=300)  # torchvision keeps 300 per image


def test_fcos_matches_torchvision(tmp_path):
    torch.manual_seed(0)
    reference = fcos_resnet50_fpn(weights=None, weights_backbone=None, min_size=256, max_size=320).eval()
    head = reference.head
    spread_weights(reference, head.classification_head.cls_logits, 0.03)
    with torch.no_grad():
        head.regression_head.bbox_ctrness.weight.normal_(0, 0.03)
        head.regression_head.bbox_reg.weight.normal_(0, 0.01)
        head.regression_head.bbox_reg.bias.fill_(2.0)  # distances of about 2 strides
    ours = converted_model("fcos_resnet50_fpn", reference, tmp_path / "fcos.pth")
    check_same_detections(reference, ours, min_count=100)


@pytest.mark.parametrize("arch", ["retinanet_resnet50_fpn", "fcos_resnet50_fpn"])
def test_coco80_keeps_real_categories(arch):
    with torch.device("meta"):
        ours = build_model("torchvision", arch, coco80=True)
    assert ours.bbox_head.num_classes == 80

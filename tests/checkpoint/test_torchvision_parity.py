"""Acceptance: torchvision's Faster R-CNN weights, converted, give torchvision's proposals and detections.

The reference model has seeded random weights (no download), with norm statistics and predictor weights spread
out so that proposals are not ties and many detections pass the score threshold. Image sizes need no resize
in torchvision's transform and are not multiples of 64, so torchvision's P6 anchor stride quirk is exercised.
"""


import pytest
import torch
from parity_helpers import smooth_image, two_stage_reference, unlabelled_batch
from torchvision.models.detection import fasterrcnn_resnet50_fpn

from lightdet.checkpoint import build_model, convert

ARCH = "fasterrcnn_resnet50_fpn"
SIZES = [(288, 608), (288, 288)]


def same_boxes(a: torch.Tensor, b: torch.Tensor, tol: float) -> bool:
    """Every box of ``a`` has a box of ``b`` within ``tol`` px and vice versa.

    Order-free, because near-equal scores may swap places between two implementations.
    """
    d = (a[:, None, :] - b[None, :, :]).abs().amax(-1)
    return bool((d.amin(1) < tol).all() and (d.amin(0) < tol).all())


@pytest.mark.slow
def test_converted_torchvision_weights_reproduce_torchvision(tmp_path):
    reference = two_stage_reference(fasterrcnn_resnet50_fpn, tmp_path / "tv.pth", min_size=288, max_size=608)
    ours = build_model("torchvision", ARCH, device="cpu").eval()
    loaded = torch.load(tmp_path / "tv.pth", map_location="cpu", weights_only=True)
    state, report, _ = convert("torchvision", ARCH, loaded, target=ours.state_dict())
    assert report.ok, report.summary()
    ours.load_state_dict(state, strict=True)

    g = torch.Generator().manual_seed(1)
    images = [smooth_image(h, w, g) for h, w in SIZES]
    captured = {}
    reference.rpn.register_forward_hook(lambda module, args, out: captured.update(proposals=out[0]))
    with torch.no_grad():
        expected = reference([im.float() / 255 for im in images])
    batch = unlabelled_batch(images)
    proposals = ours.predict_proposals(batch)
    detections = ours.predict(batch)

    for ref_props, props in zip(captured["proposals"], proposals):
        assert len(props) == len(ref_props) > 100
        assert same_boxes(props.boxes, ref_props, 1e-2)
    for ref, det in zip(expected, detections):
        assert len(det) == len(ref["boxes"]) > 0
        assert len(ref["labels"].unique()) > 1
        torch.testing.assert_close(det.boxes, ref["boxes"], atol=1e-2, rtol=0)
        torch.testing.assert_close(det.scores, ref["scores"], atol=1e-4, rtol=0)
        assert torch.equal(det.labels, ref["labels"] - 1)  # torchvision label = COCO id = ours + 1

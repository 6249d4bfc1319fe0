"""Parity with ``transformers``' RT-DETR, RT-DETRv2 and D-FINE (seeded tiny models, converted weights)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hf_reference import converted, make_reference

from lightdet.models.detr.box_ops import cxcywh_to_xyxy
from lightdet.structures import DetBatch, DetSample, ImageMeta, clip_boxes

KINDS = ("rt_detr", "rt_detr_v2", "d_fine")


@pytest.fixture(scope="module", params=KINDS)
def pair(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, object, object]:
    path = tmp_path_factory.mktemp(request.param)
    reference = make_reference(request.param, path)
    model, report = converted(Path(path))
    assert report.ok, report.summary()
    return request.param, reference, model


def smooth_image(h: int, w: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, h // 16, w // 16, generator=g)
    return (torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear")[0] * 255).round().to(torch.uint8)


@torch.no_grad()
def test_per_layer_outputs_match(pair: tuple[str, object, object]) -> None:
    kind, reference, model = pair
    x = smooth_image(320, 320, 1)[None].float() / 255
    ref = reference(pixel_values=x)
    out, _ = model.forward_decoder(x, all_layers=True)
    torch.testing.assert_close(out.enc_logits, ref.enc_topk_logits, atol=1e-4, rtol=0)
    if kind == "d_fine":  # transformers returns only the evaluated layer in eval mode
        torch.testing.assert_close(out.logits[-1], ref.logits, atol=1e-4, rtol=0)
        torch.testing.assert_close(out.boxes[-1], ref.pred_boxes, atol=1e-4, rtol=0)
    else:
        torch.testing.assert_close(out.logits, ref.intermediate_logits.transpose(0, 1), atol=1e-4, rtol=0)
        torch.testing.assert_close(out.boxes, ref.intermediate_reference_points.transpose(0, 1), atol=1e-4, rtol=0)
    assert ref.logits.std() > 0.5  # the comparison is not between near-constant outputs


@torch.no_grad()
def test_dfine_every_layer_matches_in_training_mode(tmp_path: Path) -> None:
    """In training mode transformers' D-FINE returns every layer (and the pre-head first); BN uses batch stats."""
    reference = make_reference("d_fine", tmp_path)
    model, _ = converted(tmp_path)
    reference.train()
    model.train()
    x = smooth_image(320, 320, 2)[None].float() / 255
    ref = reference(pixel_values=x)
    out, _ = model.forward_decoder(x)
    logits, boxes = ref.intermediate_logits.transpose(0, 1), ref.intermediate_reference_points.transpose(0, 1)
    torch.testing.assert_close(out.pre_logits, logits[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(out.pre_boxes, boxes[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(out.logits, logits[1:], atol=1e-4, rtol=0)
    torch.testing.assert_close(out.boxes, boxes[1:], atol=1e-4, rtol=0)
    torch.testing.assert_close(out.corners, ref.intermediate_predicted_corners.transpose(0, 1), atol=1e-4, rtol=0)


def reference_top100(logits: torch.Tensor, boxes: torch.Tensor, ori: tuple[int, int]) -> tuple[torch.Tensor, ...]:
    """transformers' post-processing (sigmoid, top-k over queries x classes), k = 100, clipped to the image."""
    h, w = ori
    scores, index = logits.sigmoid().flatten(1).topk(100, dim=1)
    labels, query = index % logits.shape[-1], index // logits.shape[-1]
    xyxy = cxcywh_to_xyxy(boxes) * torch.tensor([w, h, w, h])
    picked = xyxy.gather(1, query[..., None].expand(-1, -1, 4))[0]
    return clip_boxes(picked, ori), scores[0], labels[0]


@torch.no_grad()
def test_top100_detections_match_in_original_pixels(pair: tuple[str, object, object]) -> None:
    _, reference, model = pair
    model.num_top_queries = 100
    image = smooth_image(320, 320, 3)  # the 320x320 input of an original 240x300 (h, w) image
    meta = ImageMeta(0, "0.jpg", (240, 300), (320, 320), scale_factor=(320 / 300, 320 / 240))
    batch = DetBatch.collate([DetSample(image, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), meta)])
    ref = reference(pixel_values=image[None].float() / 255)
    boxes, scores, labels = reference_top100(ref.logits, ref.pred_boxes, (240, 300))
    (det,) = model.predict(batch)
    assert len(det) == 100
    torch.testing.assert_close(det.scores, scores, atol=1e-4, rtol=0)
    assert torch.equal(det.labels, labels)
    torch.testing.assert_close(det.boxes, boxes, atol=1e-2, rtol=0)


@torch.no_grad()
def test_rtdetrv2_discrete_sampling_matches(tmp_path: Path) -> None:
    reference = make_reference("rt_detr_v2", tmp_path, decoder_method="discrete")
    model, _ = converted(tmp_path)
    assert model.decoder.layers[0].cross_attn.method == "discrete"
    x = smooth_image(320, 320, 4)[None].float() / 255
    ref = reference(pixel_values=x)
    out, _ = model.forward_decoder(x, all_layers=True)
    torch.testing.assert_close(out.logits, ref.intermediate_logits.transpose(0, 1), atol=1e-4, rtol=0)
    torch.testing.assert_close(out.boxes, ref.intermediate_reference_points.transpose(0, 1), atol=1e-4, rtol=0)

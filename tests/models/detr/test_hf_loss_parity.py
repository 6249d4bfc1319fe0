"""Loss parity with ``transformers``' RT-DETR loss (denoising off): total and every per-term loss."""

from __future__ import annotations

from pathlib import Path

import torch
from hf_reference import converted, make_reference
from test_hf_parity import smooth_image

from lightdet.models.detr.box_ops import xyxy_to_cxcywh
from lightdet.structures import DetBatch, DetSample, ImageMeta

# transformers names the encoder head as the auxiliary output after the decoder layers
HF_ENC = {"rt_detr": "_aux_1"}


def targets(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(4, 2, generator=g) * 200
    wh = torch.rand(4, 2, generator=g) * 100 + 10
    return torch.cat((xy, xy + wh), 1), torch.randint(0, 5, (4,), generator=g)


def test_rtdetr_losses_match(tmp_path: Path) -> None:
    reference = make_reference("rt_detr", tmp_path, num_denoising=0)
    model, _ = converted(tmp_path)
    samples, labels = [], []
    for i in range(2):
        boxes, classes = targets(i)
        meta = ImageMeta(i, f"{i}.jpg", (320, 320), (320, 320))
        samples.append(DetSample(smooth_image(320, 320, 10 + i), boxes, classes, meta))
        labels.append({"class_labels": classes, "boxes": xyxy_to_cxcywh(boxes / 320)})
    batch = DetBatch.collate(samples)
    ref = reference(pixel_values=batch.images.float() / 255, labels=labels)
    ours = model.loss(batch)
    expected = {k.replace(HF_ENC["rt_detr"], "_enc_0"): v for k, v in ref.loss_dict.items()}
    assert set(ours) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(ours[key], value, atol=1e-4, rtol=0, msg=key)
    torch.testing.assert_close(sum(ours.values()), ref.loss, atol=1e-4, rtol=0)


def hf_dfine_outputs(out: object) -> dict:
    """Our decoder's heads in the layout of transformers' D-FINE criterion, each head aligned with its own
    corners (transformers' D-FINE model pairs layer i's corners with layer i-1's logits; its criterion does not)."""
    last = {"logits": out.logits[-1], "pred_boxes": out.boxes[-1], "pred_corners": out.corners[-1],
            "ref_points": out.refs[-1], "teacher_corners": out.corners[-1], "teacher_logits": out.logits[-1]}
    aux = [
        {"logits": out.logits[i], "pred_boxes": out.boxes[i], "pred_corners": out.corners[i], "ref_points": out.refs[i],
         "teacher_corners": out.corners[-1], "teacher_logits": out.logits[-1]}
        for i in range(len(out.logits) - 1)
    ]
    aux += [{"logits": out.pre_logits, "pred_boxes": out.pre_boxes}, {"logits": out.enc_logits, "pred_boxes": out.enc_boxes}]
    return {**last, "auxiliary_outputs": aux}


def test_dfine_losses_match(tmp_path: Path) -> None:
    """transformers' D-FINE criterion matches each head on its own: lightdet with union_matching=False."""
    from transformers.loss.loss_d_fine import DFineLoss

    reference = make_reference("d_fine", tmp_path, num_denoising=0)
    model, _ = converted(tmp_path)
    model.criterion.union_matching = False
    labels, boxes = [], []
    for i in range(2):
        b, c = targets(i)
        labels.append(c)
        boxes.append(xyxy_to_cxcywh(b / 320))
    images = torch.stack([smooth_image(320, 320, 10 + i) for i in range(2)]).float() / 255
    out, _ = model.forward_decoder(images, all_layers=True)
    ours = model.criterion(out, labels, boxes)
    hf = DFineLoss(reference.config)(hf_dfine_outputs(out), [{"class_labels": c, "boxes": b} for c, b in zip(labels, boxes)])
    n = len(out.logits)
    rename = {f"_aux_{n - 1}": "_pre", f"_aux_{n}": "_enc_0"}
    expected = {}
    for key, value in hf.items():
        for theirs, mine in rename.items():
            key = key.replace(theirs, mine) if key.endswith(theirs) else key
        expected[key] = value
    assert float(expected.pop("loss_ddf").detach()) == 0.0  # the last layer distils into itself
    assert set(ours) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(ours[key], value, atol=1e-4, rtol=0, msg=key)
    assert {k.split("_")[1] for k in ours} == {"vfl", "bbox", "giou", "fgl", "ddf"}

"""RTMDet: seeded losses pinned, the head's structure (convs shared, norms per level), targets, predict."""

from __future__ import annotations

import pytest
import torch
from model_builders import make_batch, make_sample
from rtmdet_builders import build_tiny_rtmdet
from torchvision.ops import generalized_box_iou

from lightdet.models import CSPNeXt, CSPNeXtPAFPN
from lightdet.models.dense_heads.dense_utils import outside_image
from lightdet.models.losses import quality_focal_loss
from lightdet.models.ops.dynamic_soft_label_assigner import box_overlaps
from lightdet.models.ops.points import distance_to_box
from lightdet.structures import DetBatch


@pytest.mark.parametrize(
    ("exp_on_reg", "expected"),
    [
        # linear distances start near 0 px: IoUs ~ 0, so the IoU-weighted losses start small (as MMDetection)
        (False, {"loss_cls": 0.0008007722, "loss_bbox": 0.002453574}),
        (True, {"loss_cls": 0.9989781, "loss_bbox": 1.089221}),
    ],
)
def test_seeded_losses_are_pinned(exp_on_reg, expected):
    torch.manual_seed(0)
    losses = build_tiny_rtmdet(exp_on_reg=exp_on_reg).loss(make_batch())
    assert set(losses) == {"loss_cls", "loss_bbox"}
    assert {k: v.item() for k, v in losses.items()} == pytest.approx(expected, rel=1e-4)


def test_head_convs_are_shared_over_levels_and_norms_are_not():
    head = build_tiny_rtmdet().bbox_head
    assert head.cls_convs[2][1].conv is head.cls_convs[0][1].conv
    assert head.reg_convs[1][0].conv is head.reg_convs[0][0].conv
    assert head.cls_convs[1][0].bn is not head.cls_convs[0][0].bn
    assert head.rtm_cls[0] is not head.rtm_cls[1]
    # the state dict lists the shared conv under every level (MMDetection's checkpoints do too)
    assert "bbox_head.cls_convs.2.1.conv.weight" in build_tiny_rtmdet().state_dict()


def test_losses_are_iou_weighted_and_normalised_by_the_sum_of_ious():
    torch.manual_seed(0)
    model = build_tiny_rtmdet(exp_on_reg=True)
    batch = make_batch()
    images, _ = model.preprocess(batch)
    feats, size = model.extract_feat(images), tuple(images.shape[-2:])
    head = model.bbox_head
    torch.manual_seed(1)
    losses = head.loss(feats, batch, size)
    # the same assignment, then MMDetection's formulas written out: GIoU weighted by each positive's IoU,
    # QFL towards the IoU at the positive's class, both divided by the sum of the IoUs
    out = head(feats)
    level_points = head.points(feats, size)
    points = torch.cat(level_points)
    strides = torch.cat(
        [torch.full((len(p),), float(s)) for p, s in zip(level_points, head.point_generator.strides)]
    )
    logits = torch.cat(out.logits, 1)
    boxes = distance_to_box(points.repeat(3, 1), torch.cat(out.distances, 1).reshape(-1, 4)).view(3, -1, 4)
    gt_index = torch.stack([
        head.assigner.assign(logits[i], boxes[i], points, strides, b[~ig], lab[~ig])
        for i, (b, lab, ig) in enumerate(zip(batch.boxes, batch.labels, batch.ignore))
    ])  # fmt: skip
    pos = gt_index >= 0
    assert pos.sum() > 0
    matched = torch.cat([b[~ig][g[p]] for b, ig, g, p in zip(batch.boxes, batch.ignore, gt_index, pos)])
    labels = torch.cat([lab[~ig][g[p]] for lab, ig, g, p in zip(batch.labels, batch.ignore, gt_index, pos)])
    iou = box_overlaps(boxes[pos], matched, aligned=True)
    giou = generalized_box_iou(boxes[pos], matched).diagonal()
    norm = max(iou.sum().item(), 1.0)
    soft = torch.zeros_like(logits)
    soft[pos] = torch.nn.functional.one_hot(labels, 3).float() * iou[:, None]
    outside = torch.stack([outside_image(points, m.img_size) for m in batch.metas])
    expected_cls = quality_focal_loss(logits, soft)[~outside].sum() / norm
    expected_bbox = 2 * (iou * (1 - giou)).sum() / norm
    torch.testing.assert_close(losses["loss_cls"], expected_cls, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(losses["loss_bbox"], expected_bbox, rtol=1e-5, atol=1e-7)


def test_images_without_objects_give_a_classification_loss_only():
    torch.manual_seed(0)
    model = build_tiny_rtmdet()
    batch = DetBatch.collate([make_sample(64, 64, seed=1), make_sample(48, 64, seed=2)])
    losses = model.loss(batch)
    assert losses["loss_bbox"].item() == 0.0 and losses["loss_cls"].item() > 0
    sum(losses.values()).backward()
    assert model.bbox_head.rtm_cls[0].weight.grad is not None


def test_predict_gives_boxes_inside_each_image():
    torch.manual_seed(0)
    model = build_tiny_rtmdet(exp_on_reg=True).eval()
    batch = make_batch()
    detections = model.predict(batch)
    assert len(detections) == 3
    for det, meta in zip(detections, batch.metas):
        h, w = meta.ori_size
        assert 0 < len(det.boxes) <= 20 and det.scores.min() >= 0.001
        assert (det.boxes[:, 2] > det.boxes[:, 0]).all() and (det.boxes[:, 3] > det.boxes[:, 1]).all()
        assert det.boxes[:, 0::2].max() <= w and det.boxes[:, 1::2].max() <= h
        assert det.labels.max() < 3


def test_cspnext_declares_its_maps_and_freezes_stages():
    backbone = CSPNeXt(
        widen_factor=0.125, deepen_factor=0.167, out_indices=(1, 2, 3, 4), frozen_stages=1
    ).train()
    assert backbone.out_channels == [16, 32, 64, 128] and backbone.strides == [4, 8, 16, 32]
    outs = backbone(torch.zeros(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(1, 16, 16, 24), (1, 32, 8, 12), (1, 64, 4, 6), (1, 128, 2, 3)]
    assert not any(p.requires_grad for p in backbone.stage1.parameters())
    assert all(p.requires_grad for p in backbone.stage2.parameters())
    assert not backbone.stem[0].bn.training and backbone.stage2[0].bn.training
    with pytest.raises(ValueError, match="out_indices"):
        CSPNeXt(out_indices=(5,))


def test_cspnext_pafpn_keeps_each_levels_size():
    neck = CSPNeXtPAFPN([16, 32, 64], 8, num_csp_blocks=1, in_strides=[8, 16, 32])
    feats = [torch.randn(2, c, s, s) for c, s in ((16, 8), (32, 4), (64, 2))]
    assert [tuple(o.shape) for o in neck(feats)] == [(2, 8, 8, 8), (2, 8, 4, 4), (2, 8, 2, 2)]
    assert neck.strides == [8, 16, 32]
    # the fine output sees the coarse input (top-down) and the coarse output the fine input (bottom-up)
    feats = [f.requires_grad_() for f in feats]
    outs = neck(feats)
    (grad_fine,) = torch.autograd.grad(outs[2].sum(), feats[0], retain_graph=True)
    (grad_coarse,) = torch.autograd.grad(outs[0].sum(), feats[2])
    assert grad_fine.abs().sum() > 0 and grad_coarse.abs().sum() > 0

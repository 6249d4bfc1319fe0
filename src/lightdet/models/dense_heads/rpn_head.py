"""Region Proposal Network head (Ren et al. 2015) on a feature pyramid, with MMDetection's parameter names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torchvision.ops import batched_nms

from lightdet.models.dense_heads.dense_utils import assign_dense_targets
from lightdet.models.losses.regression import box_regression_loss
from lightdet.models.ops.anchors import AnchorGenerator
from lightdet.models.ops.assigner import MaxIoUAssigner
from lightdet.models.ops.box_coder import DeltaXYWHCoder
from lightdet.models.ops.boxes import large_box_mask
from lightdet.models.ops.sampler import RandomSampler
from lightdet.structures import DetBatch, clip_boxes


class Proposals(NamedTuple):
    """One image's proposals in input (preprocessed) pixels: ``boxes [N, 4]`` xyxy, ``scores [N]`` in 0..1."""

    boxes: Tensor
    scores: Tensor


class RPNHead(nn.Module):
    """Shared 3x3 conv + ReLU, then one objectness logit (sigmoid) and 4 deltas per anchor, on every level.

    Args:
        in_channels: channels of the pyramid levels.
        feat_channels: channels of the shared 3x3 conv (``rpn_conv``).
        anchor_generator: anchors per level; its strides must match the pyramid.
        box_coder: deltas <-> boxes (RPN: stds 1).
        assigner, sampler: training targets (MMDetection: IoU 0.7/0.3 with low-quality matches at 0.3;
            256 anchors per image, half positive).
        loss_cls: a sigmoid loss taking logits ``[N]`` and float targets ``[N]``.
        loss_bbox: a box loss (``target_space`` deltas or boxes).
        train_pre_nms_top_n, test_pre_nms_top_n: highest-scoring anchors kept *per level* before NMS.
        train_post_nms_top_n, test_post_nms_top_n: proposals kept *per image* after NMS.
        nms_iou_thr: NMS IoU threshold, applied within each level (levels never suppress each other).
        min_box_size: proposals whose clipped width or height is not above this are dropped.

    Outputs are flattened per level in anchor order ``(H, W, A)``: objectness ``[B, H*W*A]`` and deltas
    ``[B, H*W*A, 4]``. Parameters: ``rpn_conv``, ``rpn_cls`` ``[A, C, 1, 1]``, ``rpn_reg`` ``[4A, C, 1, 1]``.
    """

    def __init__(
        self,
        in_channels: int,
        feat_channels: int = 256,
        *,
        anchor_generator: AnchorGenerator,
        box_coder: DeltaXYWHCoder,
        assigner: MaxIoUAssigner,
        sampler: RandomSampler,
        loss_cls: nn.Module,
        loss_bbox: nn.Module,
        train_pre_nms_top_n: int = 2000,
        train_post_nms_top_n: int = 1000,
        test_pre_nms_top_n: int = 1000,
        test_post_nms_top_n: int = 1000,
        nms_iou_thr: float = 0.7,
        min_box_size: float = 0.0,
    ) -> None:
        super().__init__()
        num_anchors = anchor_generator.num_base_anchors
        self.rpn_conv = nn.Conv2d(in_channels, feat_channels, 3, padding=1)
        self.rpn_cls = nn.Conv2d(feat_channels, num_anchors, 1)
        self.rpn_reg = nn.Conv2d(feat_channels, num_anchors * 4, 1)
        for conv in (self.rpn_conv, self.rpn_cls, self.rpn_reg):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        self.anchor_generator, self.box_coder = anchor_generator, box_coder
        self.assigner, self.sampler = assigner, sampler
        self.loss_cls, self.loss_bbox = loss_cls, loss_bbox
        self.train_top_n = (train_pre_nms_top_n, train_post_nms_top_n)
        self.test_top_n = (test_pre_nms_top_n, test_post_nms_top_n)
        self.nms_iou_thr = nms_iou_thr
        self.min_box_size = min_box_size

    def forward(self, feats: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Pyramid ``[B, C, H_l, W_l]`` -> per level objectness ``[B, H*W*A]``, deltas ``[B, H*W*A, 4]``."""
        logits, deltas = [], []
        for x in feats:
            t = torch.relu_(self.rpn_conv(x))
            b, _, h, w = t.shape
            logits.append(self.rpn_cls(t).permute(0, 2, 3, 1).reshape(b, -1))  # [B, A, H, W] -> [B, H*W*A]
            # [B, A*4, H, W] -> [B, H, W, A*4] -> [B, H*W*A, 4]
            deltas.append(self.rpn_reg(t).permute(0, 2, 3, 1).reshape(b, -1, 4))
        return logits, deltas

    def anchors(self, feats: Sequence[Tensor], padded_size: tuple[int, int]) -> list[Tensor]:
        """Per level ``[H*W*A, 4]`` anchors for the pyramid ``feats`` of a batch padded to ``padded_size``."""
        sizes = [(int(f.shape[-2]), int(f.shape[-1])) for f in feats]
        return self.anchor_generator(sizes, padded_size, device=feats[0].device)

    def loss(
        self, feats: Sequence[Tensor], batch: DetBatch, padded_size: tuple[int, int]
    ) -> tuple[dict[str, Tensor], list[Proposals]]:
        """Training losses ``loss_rpn_cls``/``loss_rpn_bbox`` and the (detached) training-time proposals."""
        logits, deltas = self(feats)
        anchors = self.anchors(feats, padded_size)
        sizes = [m.img_size for m in batch.metas]
        proposals = self.proposals(logits, deltas, anchors, sizes, *self.train_top_n)
        # Targets, losses and decoding in float32 even under autocast: fp16 box coordinates lose whole pixels.
        logits32, deltas32 = torch.cat(logits, 1).float(), torch.cat(deltas, 1).float()
        losses = self._losses(logits32, deltas32, torch.cat(anchors), batch)
        return losses, proposals

    def predict(
        self, feats: Sequence[Tensor], batch: DetBatch, padded_size: tuple[int, int]
    ) -> list[Proposals]:
        """Test-time proposals of each image (``test_*`` settings)."""
        logits, deltas = self(feats)
        anchors = self.anchors(feats, padded_size)
        return self.proposals(logits, deltas, anchors, [m.img_size for m in batch.metas], *self.test_top_n)

    def _losses(self, logits: Tensor, deltas: Tensor, anchors: Tensor, batch: DetBatch) -> dict[str, Tensor]:
        """``logits [B, N]``, ``deltas [B, N, 4]``, ``anchors [N, 4]`` -> sampled objectness/box losses.

        Anchors centred in an image's batch padding are neither positive nor negative (MMDetection's valid
        flags): they see only zeros and would be free negatives.
        """
        centres = (anchors[:, :2] + anchors[:, 2:]) / 2
        targets = assign_dense_targets(
            batch, centres, 1, lambda i, gt, ignored: self.assigner.assign(anchors, gt, ignored).gt_index
        )
        cls_pred, cls_target, pos_deltas, pos_anchors, pos_gt = [], [], [], [], []
        for i, (gt_index, gt_boxes) in enumerate(zip(targets.gt_index, targets.gt_boxes)):
            pos, neg = self.sampler.sample(gt_index)
            cls_pred.append(logits[i, torch.cat([pos, neg])])
            cls_target.append(torch.cat([logits.new_ones(pos.numel()), logits.new_zeros(neg.numel())]))
            pos_deltas.append(deltas[i, pos])
            pos_anchors.append(anchors[pos])
            pos_gt.append(gt_boxes[gt_index[pos]])
        num_samples = max(sum(p.numel() for p in cls_pred), 1)
        loss_cls = self.loss_cls(torch.cat(cls_pred), torch.cat(cls_target), avg_factor=num_samples)
        loss_bbox = box_regression_loss(
            self.loss_bbox, self.box_coder, torch.cat(pos_deltas), torch.cat(pos_anchors), torch.cat(pos_gt),
            num_samples,
        )
        return {"loss_rpn_cls": loss_cls, "loss_rpn_bbox": loss_bbox}

    @torch.no_grad()
    def proposals(
        self,
        logits: Sequence[Tensor],
        deltas: Sequence[Tensor],
        anchors: Sequence[Tensor],
        image_sizes: Sequence[tuple[int, int]],
        pre_nms_top_n: int,
        post_nms_top_n: int,
    ) -> list[Proposals]:
        """Top-k per level, decode, clip, drop small boxes, NMS within each level, top-N per image.

        Args:
            logits, deltas, anchors: per level, as returned by ``forward`` and ``anchors``.
            image_sizes: valid ``(h, w)`` of each image (boxes are clipped to it).
        """
        boxes, scores, levels = [], [], []
        for level, (lg, dl, an) in enumerate(zip(logits, deltas, anchors)):
            top, idx = lg.float().topk(min(pre_nms_top_n, lg.shape[1]), dim=1)  # [B, k]
            picked = dl.float().gather(1, idx[..., None].expand(-1, -1, 4))  # [B, k, 4]
            decoded = self.box_coder.decode(an[idx].reshape(-1, 4), picked.reshape(-1, 4))
            boxes.append(decoded.view(*idx.shape, 4))
            scores.append(top.sigmoid())
            levels.append(torch.full_like(idx, level))
        boxes_b, scores_b, levels_b = torch.cat(boxes, 1), torch.cat(scores, 1), torch.cat(levels, 1)
        out = []
        for b, s, lv, size in zip(boxes_b, scores_b, levels_b, image_sizes):
            b = clip_boxes(b, size)
            valid = large_box_mask(b, self.min_box_size)
            b, s, lv = b[valid], s[valid], lv[valid]
            keep = batched_nms(b, s, lv, self.nms_iou_thr)[:post_nms_top_n]
            out.append(Proposals(b[keep], s[keep]))
        return out

"""RetinaNet head (Lin et al. 2017) on a feature pyramid, with MMDetection's parameter names."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lightdet.models.dense_heads.dense_utils import (
    DenseTargets,
    assign_dense_targets,
    build_tower,
    flatten_level,
    init_conv,
    nms_detections,
    topk_candidates,
)
from lightdet.models.losses.regression import box_regression_loss
from lightdet.models.ops.anchors import AnchorGenerator
from lightdet.models.ops.assigner import MaxIoUAssigner
from lightdet.models.ops.box_coder import DeltaXYWHCoder
from lightdet.models.ops.nms import NMS, SoftNMS
from lightdet.structures import DetBatch, Detections


class RetinaHead(nn.Module):
    """Class and box towers shared over levels; sigmoid class scores and deltas for A anchors per position.

    Args:
        num_classes: foreground classes K (sigmoid: no background output).
        in_channels: channels of the pyramid levels.
        feat_channels: channels of the tower convs.
        stacked_convs: convs per tower (4 in the paper).
        norm: optional norm in the towers (``"GN"``, ...); None as in the paper.
        anchor_generator: anchors per level (RetinaNet: 3 octave scales x 3 ratios).
        box_coder: deltas <-> boxes (stds 1).
        assigner: anchor labelling (IoU 0.5 / 0.4, low-quality matches, min IoU 0).
        loss_cls: a sigmoid loss taking ``[N, K]`` logits and int64 labels ``[N]`` (K = background), e.g.
            :class:`~lightdet.models.FocalLoss`; normalised by the number of positives of the batch.
        loss_bbox: a box loss (``target_space`` deltas or boxes) on the positives.
        prior_prob: initial foreground probability of every class output.
        nms_pre: candidates kept per level at test time (highest scores above ``score_thr``).
        score_thr: test-time minimum class score.
        nms: class-wise suppression, :class:`NMS` (default 0.5) or :class:`SoftNMS`.
        max_per_img: detections kept per image.

    Parameters: ``cls_convs.{i}.conv``, ``reg_convs.{i}.conv``, ``retina_cls`` ``[A*K, C, 3, 3]`` and
    ``retina_reg`` ``[A*4, C, 3, 3]``, channel ``a * K + k`` for anchor ``a``, class ``k``.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        feat_channels: int = 256,
        *,
        stacked_convs: int = 4,
        norm: str | None = None,
        anchor_generator: AnchorGenerator,
        box_coder: DeltaXYWHCoder,
        assigner: MaxIoUAssigner,
        loss_cls: nn.Module,
        loss_bbox: nn.Module,
        prior_prob: float = 0.01,
        nms_pre: int = 1000,
        score_thr: float = 0.05,
        nms: NMS | SoftNMS | None = None,
        max_per_img: int = 100,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        num_anchors = anchor_generator.num_base_anchors
        self.cls_convs = build_tower(in_channels, feat_channels, stacked_convs, norm=norm, conv_bias=None)
        self.reg_convs = build_tower(in_channels, feat_channels, stacked_convs, norm=norm, conv_bias=None)
        self.retina_cls = nn.Conv2d(feat_channels, num_anchors * num_classes, 3, padding=1)
        self.retina_reg = nn.Conv2d(feat_channels, num_anchors * 4, 3, padding=1)
        init_conv(self.retina_cls, prior_prob)
        init_conv(self.retina_reg)
        self.anchor_generator, self.box_coder, self.assigner = anchor_generator, box_coder, assigner
        self.loss_cls, self.loss_bbox = loss_cls, loss_bbox
        self.nms_pre, self.score_thr, self.max_per_img = nms_pre, score_thr, max_per_img
        self.nms = nms if nms is not None else NMS(0.5)

    def forward(self, feats: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Pyramid ``[B, C, H_l, W_l]`` -> per level logits ``[B, H*W*A, K]`` and deltas ``[B, H*W*A, 4]``."""
        logits, deltas = [], []
        for x in feats:
            logits.append(flatten_level(self.retina_cls(self.cls_convs(x)), self.num_classes))
            deltas.append(flatten_level(self.retina_reg(self.reg_convs(x)), 4))
        return logits, deltas

    def anchors(self, feats: Sequence[Tensor], padded_size: tuple[int, int]) -> list[Tensor]:
        """Per level ``[H*W*A, 4]`` anchors of a batch padded to ``padded_size``."""
        sizes = [(int(f.shape[-2]), int(f.shape[-1])) for f in feats]
        return self.anchor_generator(sizes, padded_size, device=feats[0].device)

    def loss(
        self, feats: Sequence[Tensor], batch: DetBatch, padded_size: tuple[int, int]
    ) -> dict[str, Tensor]:
        """``loss_cls`` (positive and negative anchors) and ``loss_bbox`` (positives), both per positive."""
        logits, deltas = self(feats)
        # Targets and losses in float32 even under autocast.
        logits32, deltas32 = torch.cat(logits, 1).float(), torch.cat(deltas, 1).float()
        anchors = torch.cat(self.anchors(feats, padded_size))
        targets = self.targets(anchors, batch)
        loss_cls = self.loss_cls(
            logits32.reshape(-1, self.num_classes), targets.labels.reshape(-1), targets.weights.reshape(-1),
            avg_factor=targets.num_pos,
        )
        pos_anchors = anchors.expand(len(batch), -1, -1)[targets.positive]
        loss_bbox = box_regression_loss(
            self.loss_bbox, self.box_coder, deltas32[targets.positive], pos_anchors, targets.matched,
            targets.num_pos,
        )
        return {"loss_cls": loss_cls, "loss_bbox": loss_bbox}

    def targets(self, anchors: Tensor, batch: DetBatch) -> DenseTargets:
        """The batch's targets for ``anchors [N, 4]``: crowd boxes and the batch padding are ignored."""
        centres = (anchors[:, :2] + anchors[:, 2:]) / 2
        return assign_dense_targets(
            batch, centres, self.num_classes, lambda i, gt, ignored: self.assigner.assign(anchors, gt, ignored).gt_index
        )

    @torch.no_grad()
    def predict(
        self, feats: Sequence[Tensor], batch: DetBatch, padded_size: tuple[int, int]
    ) -> list[Detections]:
        """Per image: top ``nms_pre`` candidates per level above ``score_thr``, decode, clip, class-wise NMS.

        Returns detections in input (preprocessed) pixels.
        """
        logits, deltas = self(feats)
        anchors = self.anchors(feats, padded_size)
        out = []
        for i, meta in enumerate(batch.metas):
            boxes, scores, labels = [], [], []
            for lg, dl, an in zip(logits, deltas, anchors):
                s, idx, lab = topk_candidates(lg[i].float().sigmoid(), self.score_thr, self.nms_pre)
                boxes.append(self.box_coder.decode(an[idx], dl[i, idx].float(), meta.img_size))
                scores.append(s)
                labels.append(lab)
            out.append(nms_detections(boxes, scores, labels, self.nms, self.max_per_img))
        return out

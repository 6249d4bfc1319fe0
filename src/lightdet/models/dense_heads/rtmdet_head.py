"""RTMDet head (Lyu et al. 2022): per-level BN with convs shared over levels, distance-point boxes, dynamic
soft-label assignment, quality focal loss and GIoU (MMDetection's ``RTMDetSepBNHead``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from lightdet.models.backbones.csp_layers import ConvNormAct
from lightdet.models.dense_heads.dense_utils import (
    DenseTargets,
    assign_dense_targets,
    init_conv,
    nms_detections,
    topk_candidates,
)
from lightdet.models.ops.dynamic_soft_label_assigner import DynamicSoftLabelAssigner, box_overlaps
from lightdet.models.ops.nms import NMS, SoftNMS
from lightdet.models.ops.points import PointGenerator, distance_to_box
from lightdet.structures import DetBatch, Detections


class RTMDetOutputs(NamedTuple):
    """Per level: class ``logits [B, H*W, K]`` and ``distances [B, H*W, 4]`` (l, t, r, b in float32 pixels)."""

    logits: list[Tensor]
    distances: list[Tensor]


def _tower(in_channels: int, feat_channels: int, num_convs: int, norm: str, act: str) -> nn.Sequential:
    return nn.Sequential(*(
        ConvNormAct(in_channels if i == 0 else feat_channels, feat_channels, 3, norm=norm, act=act)
        for i in range(num_convs)
    ))  # fmt: skip


class RTMDetHead(nn.Module):
    """Class and box towers per level (conv weights shared over levels, norms not), 1x1 predictions.

    Args:
        num_classes: foreground classes K.
        in_channels, feat_channels: pyramid and tower widths.
        stacked_convs: conv units per tower (RTMDet: 2).
        norm, act: tower norm and activation.
        share_conv: the towers' convs are one module across levels (each level keeps its own norm).
        exp_on_reg: distances are ``exp(x) * stride`` (RTMDet l/x) instead of ``x * stride`` (tiny/s/m).
        pred_kernel_size: kernel of ``rtm_cls`` / ``rtm_reg``.
        point_generator: one point per position (RTMDet: offset 0, the cell's top-left corner).
        assigner: positives per point from the head's own (detached) predictions.
        loss_cls: sigmoid loss on ``[N, K]`` logits against float ``[N, K]`` soft targets (QFL).
        loss_bbox: an IoU-type loss on decoded boxes (GIoU, weight 2), weighted per positive by its IoU.
        prior_prob: initial class probability.
        nms_pre, score_thr, nms, max_per_img: test-time selection: top ``nms_pre`` (position, class)
            scores above ``score_thr`` per level, class-wise NMS, ``max_per_img`` kept.

    Parameters (MMDetection's names): ``cls_convs.{level}.{i}.{conv,bn}``, ``reg_convs.{level}.{i}.{conv,bn}``,
    ``rtm_cls.{level}``, ``rtm_reg.{level}``. Loss keys: ``loss_cls``, ``loss_bbox``; both are normalised
    by the sum of the positives' IoUs (at least 1).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        feat_channels: int = 256,
        *,
        stacked_convs: int = 2,
        norm: str = "BN",
        act: str = "SiLU",
        share_conv: bool = True,
        exp_on_reg: bool = False,
        pred_kernel_size: int = 1,
        point_generator: PointGenerator,
        assigner: DynamicSoftLabelAssigner,
        loss_cls: nn.Module,
        loss_bbox: nn.Module,
        prior_prob: float = 0.01,
        nms_pre: int = 30000,
        score_thr: float = 0.001,
        nms: NMS | SoftNMS | None = None,
        max_per_img: int = 300,
    ) -> None:
        super().__init__()
        if getattr(loss_bbox, "target_space", None) != "boxes":
            raise ValueError(
                f"RTMDetHead: loss_bbox must compare decoded boxes, got {type(loss_bbox).__name__}"
            )
        levels = range(len(point_generator.strides))
        self.num_classes = num_classes
        self.cls_convs = nn.ModuleList(
            _tower(in_channels, feat_channels, stacked_convs, norm, act) for _ in levels
        )
        self.reg_convs = nn.ModuleList(
            _tower(in_channels, feat_channels, stacked_convs, norm, act) for _ in levels
        )
        pad = pred_kernel_size // 2
        self.rtm_cls = nn.ModuleList(
            nn.Conv2d(feat_channels, num_classes, pred_kernel_size, padding=pad) for _ in levels
        )
        self.rtm_reg = nn.ModuleList(
            nn.Conv2d(feat_channels, 4, pred_kernel_size, padding=pad) for _ in levels
        )
        self._init_weights(prior_prob)
        if share_conv:
            for towers in (self.cls_convs, self.reg_convs):
                for tower in towers[1:]:
                    for unit, first in zip(tower, towers[0]):
                        unit.conv = first.conv
        self.exp_on_reg = exp_on_reg
        self.point_generator, self.assigner = point_generator, assigner
        self.loss_cls, self.loss_bbox = loss_cls, loss_bbox
        self.nms_pre, self.score_thr, self.max_per_img = nms_pre, score_thr, max_per_img
        self.nms = nms if nms is not None else NMS(0.65)

    def _init_weights(self, prior_prob: float) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                init_conv(m)
        for conv in self.rtm_cls:
            init_conv(conv, prior_prob)

    def forward(self, feats: Sequence[Tensor]) -> RTMDetOutputs:
        """Pyramid ``[B, C, H_l, W_l]`` -> :class:`RTMDetOutputs`."""
        strides = self.point_generator.strides
        if len(feats) != len(strides):
            raise ValueError(f"RTMDetHead has {len(strides)} strides, got {len(feats)} pyramid levels")
        logits, distances = [], []
        for level, (x, stride) in enumerate(zip(feats, strides)):
            b = x.shape[0]
            cls = self.rtm_cls[level](self.cls_convs[level](x))
            reg = self.rtm_reg[level](self.reg_convs[level](x)).float()
            dist = (reg.exp() if self.exp_on_reg else reg) * stride
            logits.append(cls.permute(0, 2, 3, 1).reshape(b, -1, self.num_classes))
            distances.append(dist.permute(0, 2, 3, 1).reshape(b, -1, 4))
        return RTMDetOutputs(logits, distances)

    def points(self, feats: Sequence[Tensor], padded_size: tuple[int, int]) -> list[Tensor]:
        """Per level ``[H*W, 2]`` points of a batch padded to ``padded_size``."""
        return self.point_generator.for_pyramid(feats, padded_size)

    def loss(
        self, feats: Sequence[Tensor], batch: DetBatch, padded_size: tuple[int, int]
    ) -> dict[str, Tensor]:
        """``loss_cls`` and ``loss_bbox`` of the batch."""
        out = self(feats)
        level_points = self.points(feats, padded_size)
        points, strides = self.point_generator.flatten(level_points)  # [N, 2], [N]
        logits = torch.cat(out.logits, 1).float()  # [B, N, K]
        boxes = distance_to_box(
            points.expand(len(batch), -1, -1).reshape(-1, 2), torch.cat(out.distances, 1).reshape(-1, 4)
        )
        boxes = boxes.view(len(batch), -1, 4)  # [B, N, 4]

        def assign(i: int, gt_boxes: Tensor, ignored: Tensor) -> Tensor:
            labels = batch.labels[i][~batch.ignore[i]]
            return self.assigner.assign(
                logits[i].detach(), boxes[i].detach(), points, strides, gt_boxes, labels
            )

        targets = assign_dense_targets(batch, points, self.num_classes, assign)
        return self._losses(logits.reshape(-1, self.num_classes), boxes[targets.positive], targets)

    def _losses(self, logits: Tensor, pos_boxes: Tensor, targets: DenseTargets) -> dict[str, Tensor]:
        """Losses from all logits ``[B*N, K]`` and the positives' predicted boxes ``[P, 4]``.

        The positives' class targets are the IoUs of their (detached) predictions with their ground truth.
        """
        quality = box_overlaps(pos_boxes.detach(), targets.matched, aligned=True)  # [P]
        soft = torch.zeros_like(logits)
        positive = targets.positive.reshape(-1)
        soft[positive.nonzero().squeeze(1), targets.labels.reshape(-1)[positive]] = quality
        avg_factor = max(float(quality.sum()), 1.0)
        loss_cls = self.loss_cls(logits, soft, weight=targets.weights.reshape(-1), avg_factor=avg_factor)
        loss_bbox = self.loss_bbox(pos_boxes, targets.matched, weight=quality, avg_factor=avg_factor)
        return {"loss_cls": loss_cls, "loss_bbox": loss_bbox}

    @torch.no_grad()
    def predict(
        self, feats: Sequence[Tensor], batch: DetBatch, padded_size: tuple[int, int]
    ) -> list[Detections]:
        """Per image: per-level candidates, distances -> clipped boxes, empty boxes dropped, class-wise NMS."""
        out = self(feats)
        points = self.points(feats, padded_size)
        dets = []
        for i, meta in enumerate(batch.metas):
            boxes, scores, labels = [], [], []
            for logits, dist, pts in zip(out.logits, out.distances, points):
                s, idx, lab = topk_candidates(logits[i].float().sigmoid(), self.score_thr, self.nms_pre)
                b = distance_to_box(pts[idx], dist[i, idx], meta.img_size)
                keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
                boxes.append(b[keep])
                scores.append(s[keep])
                labels.append(lab[keep])
            dets.append(nms_detections(boxes, scores, labels, self.nms, self.max_per_img))
        return dets

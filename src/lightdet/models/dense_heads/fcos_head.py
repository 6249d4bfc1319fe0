"""FCOS head (Tian et al. 2019): anchor-free class, distance and centre-ness predictions per position."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightdet.models.dense_heads.dense_utils import (
    Scale,
    assign_dense_targets,
    build_tower,
    init_conv,
    nms_detections,
    topk_candidates,
)
from lightdet.models.ops.fcos_assigner import FCOSAssigner
from lightdet.models.ops.nms import NMS, SoftNMS
from lightdet.models.ops.points import PointGenerator, box_to_distance, centerness, distance_to_box
from lightdet.structures import DetBatch, Detections

SCORE_MODES = ("multiply", "sqrt")


class FCOSOutputs(NamedTuple):
    """Per level: ``logits [B, H*W, K]``, ``distances [B, H*W, 4]`` (l, t, r, b in pixels, >= 0) and
    ``centerness [B, H*W]`` logits.
    """

    logits: list[Tensor]
    distances: list[Tensor]
    centerness: list[Tensor]


class FCOSHead(nn.Module):
    """Class and box towers shared over levels; per position K class logits, 4 distances, 1 centre-ness.

    Args:
        num_classes: foreground classes K.
        in_channels, feat_channels: pyramid and tower channels.
        stacked_convs: convs per tower.
        norm: tower norm: ``"GN"`` is the "gn-head" setting; None for none.
        conv_bias: tower conv bias; None: only without a norm (MMDetection); torchvision: True.
        point_generator: positions per level (its strides scale the distances).
        assigner: positives per point (regress ranges, centre sampling).
        loss_cls: sigmoid loss on ``[N, K]`` logits with int64 labels (K = background), per positive.
        loss_bbox: an IoU-type loss on decoded boxes (IoU / GIoU).
        loss_centerness: sigmoid BCE on centre-ness logits of the positives.
        norm_on_bbox: distances are ``relu(scale * x) * stride`` (FCOS's improvements, torchvision);
            otherwise ``exp(scale * x)`` pixels (the original FCOS, MMDetection's default).
        centerness_on_reg: centre-ness from the box tower (improvements, torchvision) or the class tower.
        learnable_scales: a learnable :class:`Scale` per level (``scales.{i}.scale``); torchvision has none.
        centerness_weighted_bbox: weight each positive's box loss by its centre-ness target and normalise
            by their sum (MMDetection); otherwise by the number of positives (torchvision).
        prior_prob: initial class probability.
        score_mode: ``"multiply"``: candidates by class score above ``score_thr``, final score class x
            centre-ness (MMDetection); ``"sqrt"``: candidates and final score ``sqrt(class x centre-ness)``
            (torchvision).
        nms_pre, score_thr, nms, max_per_img: test-time selection as in :class:`RetinaHead`.

    Parameters: ``cls_convs.{i}.{conv,gn}``, ``reg_convs.{i}.{conv,gn}``, ``conv_cls``, ``conv_reg``,
    ``conv_centerness`` (all 3x3), ``scales.{i}.scale``.
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        feat_channels: int = 256,
        *,
        stacked_convs: int = 4,
        norm: str | None = "GN",
        conv_bias: bool | None = None,
        point_generator: PointGenerator,
        assigner: FCOSAssigner,
        loss_cls: nn.Module,
        loss_bbox: nn.Module,
        loss_centerness: nn.Module,
        norm_on_bbox: bool = False,
        centerness_on_reg: bool = False,
        learnable_scales: bool = True,
        centerness_weighted_bbox: bool = True,
        prior_prob: float = 0.01,
        score_mode: str = "multiply",
        nms_pre: int = 1000,
        score_thr: float = 0.05,
        nms: NMS | SoftNMS | None = None,
        max_per_img: int = 100,
    ) -> None:
        super().__init__()
        if score_mode not in SCORE_MODES:
            raise ValueError(f"FCOSHead: score_mode must be one of {SCORE_MODES}, got {score_mode!r}")
        if getattr(loss_bbox, "target_space", None) != "boxes":
            raise ValueError(
                f"FCOSHead: loss_bbox must compare decoded boxes (IoU-type), got {type(loss_bbox).__name__}"
            )
        self.num_classes = num_classes
        self.cls_convs, self.reg_convs = (
            build_tower(in_channels, feat_channels, stacked_convs, norm=norm, conv_bias=conv_bias)
            for _ in range(2)
        )
        self.conv_cls = nn.Conv2d(feat_channels, num_classes, 3, padding=1)
        self.conv_reg = nn.Conv2d(feat_channels, 4, 3, padding=1)
        self.conv_centerness = nn.Conv2d(feat_channels, 1, 3, padding=1)
        init_conv(self.conv_cls, prior_prob)
        init_conv(self.conv_reg)
        init_conv(self.conv_centerness)
        num_levels = len(point_generator.strides)
        self.scales = nn.ModuleList(Scale(1.0) for _ in range(num_levels)) if learnable_scales else None
        self.point_generator, self.assigner = point_generator, assigner
        self.loss_cls, self.loss_bbox, self.loss_centerness = loss_cls, loss_bbox, loss_centerness
        self.norm_on_bbox, self.centerness_on_reg = norm_on_bbox, centerness_on_reg
        self.centerness_weighted_bbox = centerness_weighted_bbox
        self.score_mode = score_mode
        self.nms_pre, self.score_thr, self.max_per_img = nms_pre, score_thr, max_per_img
        self.nms = nms if nms is not None else NMS(0.5)

    def forward(self, feats: Sequence[Tensor]) -> FCOSOutputs:
        """Pyramid ``[B, C, H_l, W_l]`` -> :class:`FCOSOutputs` (distances in float32 pixels)."""
        strides = self.point_generator.strides
        if len(feats) != len(strides):
            raise ValueError(f"FCOSHead has {len(strides)} strides, got {len(feats)} pyramid levels")
        logits, distances, ctr = [], [], []
        for level, (x, stride) in enumerate(zip(feats, strides)):
            cls_feat, reg_feat = self.cls_convs(x), self.reg_convs(x)
            b = x.shape[0]
            logits.append(self.conv_cls(cls_feat).permute(0, 2, 3, 1).reshape(b, -1, self.num_classes))
            reg = self.conv_reg(reg_feat)
            if self.scales is not None:
                reg = self.scales[level](reg)
            reg = reg.float()
            dist = F.relu(reg) * stride if self.norm_on_bbox else reg.exp()
            distances.append(dist.permute(0, 2, 3, 1).reshape(b, -1, 4))
            ctr_feat = reg_feat if self.centerness_on_reg else cls_feat
            ctr.append(self.conv_centerness(ctr_feat).reshape(b, -1))
        return FCOSOutputs(logits, distances, ctr)

    def points(self, feats: Sequence[Tensor], padded_size: tuple[int, int]) -> list[Tensor]:
        """Per level ``[H*W, 2]`` points of a batch padded to ``padded_size``."""
        return self.point_generator.for_pyramid(feats, padded_size)

    def loss(
        self, feats: Sequence[Tensor], batch: DetBatch, padded_size: tuple[int, int]
    ) -> dict[str, Tensor]:
        """``loss_cls``, ``loss_bbox`` and ``loss_centerness`` of the batch."""
        out = self(feats)
        level_points = self.points(feats, padded_size)
        points, strides = self.point_generator.flatten(level_points)  # [N, 2], [N]
        ranges = self.assigner.level_ranges([len(p) for p in level_points], device=points.device)
        distances, ctr = torch.cat(out.distances, 1), torch.cat(out.centerness, 1).float()
        targets = assign_dense_targets(
            batch, points, self.num_classes,
            lambda i, gt, ignored: self.assigner.assign(points, strides, ranges, gt, ignored),
        )  # fmt: skip
        pos = targets.positive
        logits = torch.cat(out.logits, 1).float().reshape(-1, self.num_classes)
        return self._losses(
            logits, targets.labels.reshape(-1), targets.weights.reshape(-1),
            distances[pos], ctr[pos], points.expand(len(batch), -1, -1)[pos], targets.matched,
        )

    def _losses(
        self, logits: Tensor, labels: Tensor, weights: Tensor,
        pos_dist: Tensor, pos_ctr: Tensor, pos_points: Tensor, pos_gt: Tensor,
    ) -> dict[str, Tensor]:
        """Losses from all logits ``[N, K]``, labels and weights ``[N]``, and the positives' ``[P, .]``."""
        num_pos = max(pos_points.shape[0], 1)
        loss_cls = self.loss_cls(logits, labels, weight=weights, avg_factor=num_pos)
        ctr_target = centerness(box_to_distance(pos_points, pos_gt))
        if self.centerness_weighted_bbox:
            bbox_weight, bbox_norm = ctr_target, max(float(ctr_target.sum()), 1e-6)
        else:
            bbox_weight, bbox_norm = None, float(num_pos)
        pred_boxes = distance_to_box(pos_points, pos_dist)
        loss_bbox = self.loss_bbox(pred_boxes, pos_gt, weight=bbox_weight, avg_factor=bbox_norm)
        loss_ctr = self.loss_centerness(pos_ctr, ctr_target, avg_factor=num_pos)
        return {"loss_cls": loss_cls, "loss_bbox": loss_bbox, "loss_centerness": loss_ctr}

    @torch.no_grad()
    def predict(
        self, feats: Sequence[Tensor], batch: DetBatch, padded_size: tuple[int, int]
    ) -> list[Detections]:
        """Per image: per-level candidates, distances -> clipped boxes, class-wise NMS (input pixels)."""
        out = self(feats)
        points = self.points(feats, padded_size)
        dets = []
        for i, meta in enumerate(batch.metas):
            boxes, scores, labels = [], [], []
            for lg, dist, ctr, pts in zip(out.logits, out.distances, out.centerness, points):
                s, idx, lab = self._candidates(lg[i].float().sigmoid(), ctr[i].float().sigmoid())
                boxes.append(distance_to_box(pts[idx], dist[i, idx], meta.img_size))
                scores.append(s)
                labels.append(lab)
            dets.append(nms_detections(boxes, scores, labels, self.nms, self.max_per_img))
        return dets

    def _candidates(self, cls_scores: Tensor, ctr_scores: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One level's ``(scores, point index, labels)`` from class ``[N, K]`` and centre-ness ``[N]``."""
        if self.score_mode == "sqrt":
            return topk_candidates((cls_scores * ctr_scores[:, None]).sqrt(), self.score_thr, self.nms_pre)
        s, idx, lab = topk_candidates(cls_scores, self.score_thr, self.nms_pre)
        return s * ctr_scores[idx], idx, lab

"""The training objective of RT-DETR / D-FINE: Hungarian matching per prediction head, then VFL + L1 + GIoU
(and D-FINE's FGL + DDF) on the last layer, every auxiliary layer, the encoder's selected queries, D-FINE's
pre-head, and the denoising queries (matched to their own ground truth).

Loss keys: ``loss_{vfl,bbox,giou,fgl,ddf}`` for the last layer, ``..._aux_{l}`` for earlier layers,
``..._pre`` (D-FINE's first-layer pre-head), ``..._enc_0`` (encoder queries), ``..._dn_{l}`` and
``..._dn_pre`` (denoising). Each is already multiplied by its weight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from lightdet.models.detr.box_ops import cxcywh_to_xyxy
from lightdet.models.detr.decoder import DecoderOutput
from lightdet.models.detr.denoising import DenoisingQueries
from lightdet.models.detr.fdr import box_to_distance
from lightdet.models.detr.losses import (
    decoupled_distillation_loss,
    distillation_mix,
    fine_grained_localization_loss,
    giou_loss,
    l1_box_loss,
    matched_iou,
    varifocal_loss,
)
from lightdet.models.detr.matcher import HungarianMatcher, Match


@dataclass
class Head:
    """One prediction head's outputs for the loss (``[B, Q, ...]``; D-FINE layers also have corners/refs)."""

    logits: Tensor
    boxes: Tensor
    corners: Tensor | None = None
    refs: Tensor | None = None


def union_matches(matches: Sequence[Sequence[Match]]) -> list[Match]:
    """GO-LSD's union of several heads' matches, per image: every query matched by any head, paired with the
    ground truth it was matched to most often (ties: the lowest ground-truth index)."""
    out = []
    for per_head in zip(*matches):
        pairs = torch.cat([torch.stack(m, 1) for m in per_head])  # [P, 2] (query, gt)
        if len(pairs) == 0:
            out.append((pairs[:, 0], pairs[:, 1]))
            continue
        unique, counts = torch.unique(pairs, dim=0, return_counts=True)  # sorted by (query, gt)
        order = torch.sort(-counts, stable=True).indices
        ranked = unique[order]
        queries, first = torch.unique(ranked[:, 0], return_inverse=True)
        position = torch.arange(len(ranked)).scatter_reduce(0, first, torch.arange(len(ranked)), "amin", include_self=False)
        chosen = ranked[position[: len(queries)]]
        out.append((chosen[:, 0], chosen[:, 1]))
    return out


def flat_index(matches: Sequence[Match]) -> tuple[Tensor, Tensor, Tensor]:
    """Per-image matches -> ``(batch index, query index, ground-truth index)``, concatenated."""
    batch = torch.cat([torch.full_like(q, i) for i, (q, _) in enumerate(matches)])
    return batch, torch.cat([q for q, _ in matches]), torch.cat([g for _, g in matches])


class DETRCriterion:
    """Weighted VFL / L1 / GIoU (RT-DETR: 1 / 5 / 2) and D-FINE's FGL / DDF (0.15 / 1.5) over all heads.

    Args:
        num_classes: K.
        matcher: the :class:`HungarianMatcher` (costs class 2, L1 5, GIoU 2 by default).
        weight_vfl, weight_bbox, weight_giou, weight_fgl, weight_ddf: loss weights.
        alpha, gamma: of the varifocal loss.
        reg_max, reg_scale, up: D-FINE's bins (as in :class:`~lightdet.models.detr.FDR`), for FGL targets.
        union_matching: D-FINE's GO-LSD: the box, FGL and DDF losses of every matching head use the union of
            all heads' matches (normalised by its size); False uses each head's own matches.
        ddf_temperature: softening of the distillation.
    """

    def __init__(
        self,
        num_classes: int,
        matcher: HungarianMatcher | None = None,
        *,
        weight_vfl: float = 1.0,
        weight_bbox: float = 5.0,
        weight_giou: float = 2.0,
        weight_fgl: float = 0.15,
        weight_ddf: float = 1.5,
        alpha: float = 0.75,
        gamma: float = 2.0,
        reg_max: int = 32,
        reg_scale: float = 4.0,
        up: float = 0.5,
        union_matching: bool = True,
        ddf_temperature: float = 5.0,
    ) -> None:
        self.num_classes = num_classes
        self.matcher = matcher or HungarianMatcher()
        self.weights = {"vfl": weight_vfl, "bbox": weight_bbox, "giou": weight_giou, "fgl": weight_fgl, "ddf": weight_ddf}
        self.alpha, self.gamma = alpha, gamma
        self.reg_max, self.reg_scale, self.up = reg_max, reg_scale, up
        self.union_matching, self.ddf_temperature = union_matching, ddf_temperature

    def __call__(
        self, out: DecoderOutput, labels: Sequence[Tensor], boxes: Sequence[Tensor],
        denoising: DenoisingQueries | None = None,
    ) -> dict[str, Tensor]:
        """``labels``/``boxes``: per image ``int64 [n_i]`` and ``[n_i, 4]`` normalised cxcywh."""
        num_boxes = max(sum(len(t) for t in labels), 1)
        d = out.num_denoising
        losses, mix = self.matching_losses(heads_of(out, slice(d, None)), out, labels, boxes, num_boxes)
        if denoising is not None and d > 0:
            dn_heads = heads_of(out, slice(0, d))
            losses.update(self.denoising_losses(dn_heads, denoising, labels, boxes, num_boxes, mix))
        return losses

    def matching_losses(
        self, layers: tuple[list[Head], Head | None], out: DecoderOutput, labels: Sequence[Tensor],
        boxes: Sequence[Tensor], num_boxes: int,
    ) -> tuple[dict[str, Tensor], tuple[Tensor, Tensor] | None]:
        """Losses of the decoder layers, the pre-head and the encoder queries, each matched on its own; also
        DDF's mixing weights of the box matches (for the denoising queries)."""
        heads, pre = layers
        enc = Head(out.enc_logits, out.enc_boxes)
        named = [(suffix(i, len(heads)), h) for i, h in enumerate(heads)] + ([("_pre", pre)] if pre else [])
        matches = {name: self.matcher(h.logits, h.boxes, labels, boxes) for name, h in named + [("_enc_0", enc)]}
        union = self.union_matching and heads[-1].corners is not None
        box_matches = union_matches([matches[n] for n, _ in named] + [matches["_enc_0"]]) if union else None
        num_box = max(sum(len(q) for q, _ in box_matches), 1) if box_matches else num_boxes
        teacher, num_queries = heads[-1], heads[-1].logits.shape[0] * heads[-1].logits.shape[1]
        losses, mix = {}, None
        for name, head in named + [("_enc_0", enc)]:
            by_box = box_matches or matches[name]
            head_mix = distillation_mix(sum(len(m) for m, _ in by_box), num_queries)
            student = head.corners is not None and head is not teacher
            mix = head_mix if student else mix
            terms = self.head_losses(
                head, matches[name], by_box, labels, boxes, num_boxes, num_box, teacher if student else None, head_mix
            )
            losses.update({k + name: v for k, v in terms.items()})
        return losses, mix

    def denoising_losses(
        self, layers: tuple[list[Head], Head | None], denoising: DenoisingQueries, labels: Sequence[Tensor],
        boxes: Sequence[Tensor], num_boxes: int, mix: tuple[Tensor, Tensor] | None,
    ) -> dict[str, Tensor]:
        """Losses of the denoising queries: each positive copy is matched to its own ground truth."""
        heads, pre = layers
        matches = [
            (idx, torch.arange(len(t), device=idx.device).tile(denoising.num_groups))
            for idx, t in zip(denoising.positive_idx, labels)
        ]
        n = num_boxes * denoising.num_groups
        named = [(f"_dn_{i}", h) for i, h in enumerate(heads)] + ([("_dn_pre", pre)] if pre else [])
        losses: dict[str, Tensor] = {}
        for name, head in named:
            teacher = heads[-1] if head is not heads[-1] and head.corners is not None else None
            terms = self.head_losses(head, matches, matches, labels, boxes, n, n, teacher, mix)
            losses.update({k + name: v for k, v in terms.items()})
        return losses

    def head_losses(
        self, head: Head, cls_matches: Sequence[Match], box_matches: Sequence[Match], labels: Sequence[Tensor],
        boxes: Sequence[Tensor], num_cls: int, num_box: int, teacher: Head | None,
        mix: tuple[Tensor, Tensor] | None,
    ) -> dict[str, Tensor]:
        """Weighted losses of one head (``mix``: DDF's weights of matched / unmatched queries)."""
        b, q, gi = flat_index(cls_matches)
        target_boxes = torch.cat([t[g] for t, (_, g) in zip(boxes, cls_matches)])
        target_classes = torch.full(head.logits.shape[:2], self.num_classes, dtype=torch.int64, device=head.logits.device)
        target_classes[b, q] = torch.cat([t[g] for t, (_, g) in zip(labels, cls_matches)])
        scores = torch.zeros(head.logits.shape[:2], dtype=head.logits.dtype, device=head.logits.device)
        scores[b, q] = matched_iou(head.boxes[b, q], target_boxes).to(scores.dtype)
        w = self.weights
        out = {"loss_vfl": w["vfl"] * varifocal_loss(head.logits, target_classes, scores, num_cls, self.alpha, self.gamma)}
        b, q, _ = flat_index(box_matches)
        src = head.boxes[b, q]
        target_boxes = torch.cat([t[g] for t, (_, g) in zip(boxes, box_matches)])
        out["loss_bbox"] = w["bbox"] * l1_box_loss(src, target_boxes, num_box)
        out["loss_giou"] = w["giou"] * giou_loss(src, target_boxes, num_box)
        if head.corners is None or head.refs is None:
            return out
        ious = matched_iou(src, target_boxes)
        target, right, left = box_to_distance(head.refs[b, q].detach(), cxcywh_to_xyxy(target_boxes), self.reg_max, self.reg_scale, self.up)
        corners = head.corners[b, q].reshape(-1, self.reg_max + 1)
        out["loss_fgl"] = w["fgl"] * fine_grained_localization_loss(corners, target, right, left, ious, num_box)
        if teacher is not None and teacher.corners is not None:
            ddf = decoupled_distillation_loss(
                head.corners, teacher.corners, teacher.logits, (b, q), ious, self.ddf_temperature, mix
            )
            out["loss_ddf"] = w["ddf"] * ddf
        return out


def suffix(layer: int, num_layers: int) -> str:
    """``""`` for the last layer, ``"_aux_{layer}"`` for the others."""
    return "" if layer == num_layers - 1 else f"_aux_{layer}"


def heads_of(out: DecoderOutput, part: slice) -> tuple[list[Head], Head | None]:
    """The per-layer heads and D-FINE's pre-head, restricted to the queries ``part`` (denoising or matching)."""
    heads = [
        Head(
            out.logits[i][:, part], out.boxes[i][:, part],
            None if out.corners is None else out.corners[i][:, part],
            None if out.refs is None else out.refs[i][:, part],
        )
        for i in range(len(out.logits))
    ]
    pre = None
    if out.pre_logits is not None and out.pre_boxes is not None:
        pre = Head(out.pre_logits[:, part], out.pre_boxes[:, part])
    return heads, pre

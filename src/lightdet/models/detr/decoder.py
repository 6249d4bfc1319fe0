"""The real-time DETRs' transformer decoder: query selection, deformable decoder layers, per-layer heads.

RT-DETR (v1/v2) refines boxes iteratively in inverse-sigmoid space; with an :class:`~lightdet.models.detr.FDR`
part the decoder is D-FINE's (edge distributions, a pre-box from the first layer, LQE). Layer names follow
the original repositories (``self_attn``, ``norm1``, ``cross_attn``, ``norm2``/``gateway``, ``linear1``,
``linear2``, ``norm3``; heads ``dec_score_head.{i}``, ``dec_bbox_head.{i}``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lightdet.models.detr.blocks import MLP, ConvNormAct, build_activation
from lightdet.models.detr.box_ops import inverse_sigmoid
from lightdet.models.detr.deformable_attention import MSDeformableAttention, split_levels
from lightdet.models.detr.denoising import DenoisingQueries, contrastive_denoising
from lightdet.models.detr.fdr import FDR, distance_to_box, integral
from lightdet.models.detr.query_selection import QuerySelection, flatten_levels


@dataclass
class DecoderOutput:
    """What the decoder predicts (boxes are normalised cxcywh; ``D`` denoising queries come first).

    Attributes:
        logits: ``[L, B, D + Q, K]`` class logits of the returned layers (all in training, else the last).
        boxes: ``[L, B, D + Q, 4]``.
        enc_logits, enc_boxes: ``[B, Q, K]``, ``[B, Q, 4]`` of the selected encoder queries.
        num_denoising: D (0 without denoising).
        corners, refs: D-FINE: ``[L, B, D + Q, 4 * (R + 1)]`` edge logits and ``[L, B, D + Q, 4]`` the
            reference boxes they are relative to; None for RT-DETR.
        pre_logits, pre_boxes: D-FINE: ``[B, D + Q, K]``, ``[B, D + Q, 4]`` of the first layer's pre-head.
    """

    logits: Tensor
    boxes: Tensor
    enc_logits: Tensor
    enc_boxes: Tensor
    num_denoising: int = 0
    corners: Tensor | None = None
    refs: Tensor | None = None
    pre_logits: Tensor | None = None
    pre_boxes: Tensor | None = None


class Gate(nn.Module):
    """D-FINE's gated residual: ``norm(g1 * residual + g2 * x)``, ``(g1, g2) = sigmoid(Linear([residual, x]))``."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.gate = nn.Linear(2 * d_model, 2 * d_model)
        self.norm = nn.LayerNorm(d_model)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)

    def forward(self, residual: Tensor, x: Tensor) -> Tensor:
        g1, g2 = torch.sigmoid(self.gate(torch.cat((residual, x), -1))).chunk(2, -1)
        return self.norm(g1 * residual + g2 * x)


class DecoderLayer(nn.Module):
    """Self-attention -> deformable cross-attention -> FFN, post-norm; D-FINE gates the cross-attention residual.

    Shapes: ``x [B, Q, C]``, ``reference [B, Q, 4]``, ``pos [B, Q, C]``, ``attn_mask bool [Q, Q]``.
    """

    def __init__(
        self,
        cross_attn: MSDeformableAttention,
        num_heads: int = 8,
        ffn_dim: int = 1024,
        dropout: float = 0.0,
        act: str = "relu",
        gated: bool = False,
    ) -> None:
        super().__init__()
        d = cross_attn.embed_dim
        self.self_attn = nn.MultiheadAttention(d, num_heads, dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(d)
        self.cross_attn = cross_attn
        self.gateway = Gate(d) if gated else None
        self.norm2 = None if gated else nn.LayerNorm(d)
        self.linear1 = nn.Linear(d, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, d)
        self.norm3 = nn.LayerNorm(d)
        self.dropout = nn.Dropout(dropout)
        self.act = build_activation(act)

    def forward(
        self, x: Tensor, reference: Tensor, memory: Tensor | list[Tensor], spatial_shapes: Sequence[tuple[int, int]],
        pos: Tensor, attn_mask: Tensor | None = None,
    ) -> Tensor:
        qk = x + pos
        x = self.norm1(x + self.dropout(self.self_attn(qk, qk, x, attn_mask=attn_mask, need_weights=False)[0]))
        cross = self.dropout(self.cross_attn(x + pos, reference, memory, spatial_shapes))
        x = self.gateway(x, cross) if self.gateway is not None else self.norm2(x + cross)  # type: ignore[misc]
        x = x + self.dropout(self.linear2(self.dropout(self.act(self.linear1(x)))))
        return self.norm3(x.clamp(-65504, 65504))  # fp16 guard (D-FINE); no effect on finite fp32 values


def build_input_proj(in_channels: Sequence[int], hidden_dim: int, num_levels: int, proj_same_width: bool) -> nn.ModuleList:
    """1x1 conv-BN per input level, then 3x3 stride-2 conv-BN for each extra level (from the coarsest input).

    Without ``proj_same_width`` (D-FINE) a level whose width is already ``hidden_dim`` is passed through.
    """
    projs: list[nn.Module] = [
        ConvNormAct(c, hidden_dim, 1) if proj_same_width or c != hidden_dim else nn.Identity() for c in in_channels
    ]
    c = in_channels[-1]
    for _ in range(num_levels - len(in_channels)):
        projs.append(ConvNormAct(c, hidden_dim, 3, 2) if proj_same_width or c != hidden_dim else nn.Identity())
        c = hidden_dim
    return nn.ModuleList(projs)


def prior_bias(prob: float = 0.01) -> float:
    """The logit bias of a sigmoid classifier that starts at probability ``prob``."""
    return -math.log((1 - prob) / prob)


class DETRDecoder(nn.Module):
    """Encoder-side query selection, then ``num_layers`` deformable decoder layers with per-layer heads.

    Args:
        num_classes: K (sigmoid classes, no background slot).
        in_channels: channels of the encoder maps (``encoder.out_channels``).
        hidden_dim, num_queries, num_layers, num_heads, ffn_dim, dropout, act: of the decoder.
        num_levels: memory levels (extra ones come from stride-2 convs on the coarsest map).
        num_points: deformable sampling points per level (an int or one per level, RT-DETRv2).
        offset_scale, method: of :class:`MSDeformableAttention` (``method="discrete"``: RT-DETRv2's option).
        eval_idx: the layer whose predictions inference returns (-1: the last); later layers are skipped.
        num_denoising, label_noise_ratio, box_noise_scale: contrastive denoising in training (0 disables).
        learn_query_content: learned query content instead of the selected encoder features.
        fdr: D-FINE's :class:`FDR` part (then the cross-attention samples the memory without projections,
            the cross-attention residual is gated and the query positions are clamped to ``[-10, 10]``).
        proj_same_width: project input levels already ``hidden_dim`` wide (RT-DETR) or pass them (D-FINE).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: Sequence[int],
        *,
        hidden_dim: int = 256,
        num_queries: int = 300,
        num_layers: int = 6,
        num_heads: int = 8,
        ffn_dim: int = 1024,
        dropout: float = 0.0,
        act: str = "relu",
        num_levels: int = 3,
        num_points: int | Sequence[int] = 4,
        offset_scale: float = 0.5,
        method: str = "default",
        eval_idx: int = -1,
        num_denoising: int = 100,
        label_noise_ratio: float = 0.5,
        box_noise_scale: float = 1.0,
        learn_query_content: bool = False,
        fdr: FDR | None = None,
        proj_same_width: bool = True,
    ) -> None:
        super().__init__()
        self.num_classes, self.hidden_dim, self.num_queries = num_classes, hidden_dim, num_queries
        self.eval_idx = eval_idx if eval_idx >= 0 else num_layers + eval_idx
        self.num_denoising, self.label_noise_ratio, self.box_noise_scale = num_denoising, label_noise_ratio, box_noise_scale
        self.input_proj = build_input_proj(in_channels, hidden_dim, num_levels, proj_same_width)
        self.query_selection = QuerySelection(hidden_dim, num_classes)
        self.tgt_embed = nn.Embedding(num_queries, hidden_dim) if learn_query_content else None
        self.denoising_class_embed = (
            nn.Embedding(num_classes + 1, hidden_dim, padding_idx=num_classes) if num_denoising > 0 else None
        )
        self.query_pos_head = MLP(4, 2 * hidden_dim, hidden_dim, 2)
        self.layers = nn.ModuleList(
            DecoderLayer(
                MSDeformableAttention(hidden_dim, num_heads, num_levels, num_points, offset_scale=offset_scale,
                                      method=method, value_proj=fdr is None),
                num_heads, ffn_dim, dropout, act, gated=fdr is not None,
            )
            for _ in range(num_layers)
        )
        box_out = 4 if fdr is None else fdr.out_dim
        self.dec_score_head = nn.ModuleList(nn.Linear(hidden_dim, num_classes) for _ in range(num_layers))
        self.dec_bbox_head = nn.ModuleList(MLP(hidden_dim, hidden_dim, box_out, 3) for _ in range(num_layers))
        self.fdr = fdr
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Class heads start at probability 0.01, box heads at zero updates (the reference initialisation)."""
        for head in self.dec_score_head:
            nn.init.constant_(head.bias, prior_bias())
        for head in self.dec_bbox_head:
            nn.init.zeros_(head.layers[-1].weight)
            nn.init.zeros_(head.layers[-1].bias)
        for layer in self.query_pos_head.layers:
            nn.init.xavier_uniform_(layer.weight)
        if self.tgt_embed is not None:
            nn.init.xavier_uniform_(self.tgt_embed.weight)

    def denoising_queries(self, labels: Sequence[Tensor], boxes: Sequence[Tensor]) -> DenoisingQueries | None:
        """Noised copies of the targets (``boxes`` normalised cxcywh), or None when denoising is off."""
        if self.denoising_class_embed is None:
            return None
        return contrastive_denoising(
            labels, boxes, num_classes=self.num_classes, num_queries=self.num_queries,
            num_denoising=self.num_denoising, label_noise_ratio=self.label_noise_ratio,
            box_noise_scale=self.box_noise_scale,
        )

    def memory(self, feats: Sequence[Tensor]) -> tuple[Tensor, list[tuple[int, int]]]:
        """Encoder maps -> projected, flattened memory ``[B, N, C]`` and the level sizes."""
        sources = [proj(f) for proj, f in zip(self.input_proj, feats)]
        for proj in self.input_proj[len(feats):]:
            sources.append(proj(sources[-1] if len(sources) > len(feats) else feats[-1]))
        return flatten_levels(sources)

    def forward(
        self, feats: Sequence[Tensor], denoising: DenoisingQueries | None = None, all_layers: bool | None = None
    ) -> DecoderOutput:
        """``feats``: encoder maps ``[B, C_l, H_l, W_l]``; ``all_layers`` (default: in training) returns every
        layer's predictions, else only those of ``eval_idx``."""
        all_layers = self.training if all_layers is None else all_layers
        memory, shapes = self.memory(feats)
        content, ref_unact, enc_logits, enc_boxes = self.query_selection(memory, shapes, self.num_queries)
        if self.tgt_embed is not None:
            content = self.tgt_embed.weight[None].expand(memory.shape[0], -1, -1)
        attn_mask, num_dn = None, 0
        if denoising is not None:
            content = torch.cat((self.denoising_class_embed(denoising.labels), content), 1)  # type: ignore[misc]
            ref_unact = torch.cat((denoising.boxes_unact, ref_unact), 1)
            attn_mask, num_dn = denoising.attn_mask, denoising.num_queries
        run = self._fdr_layers if self.fdr is not None else self._refine_layers
        layers = run(content, ref_unact, memory, shapes, attn_mask, all_layers)
        return DecoderOutput(enc_logits=enc_logits, enc_boxes=enc_boxes, num_denoising=num_dn, **layers)

    def _last_layer(self, all_layers: bool) -> int:
        return len(self.layers) - 1 if all_layers else self.eval_idx

    def _refine_layers(
        self, x: Tensor, ref_unact: Tensor, memory: Tensor, shapes: list[tuple[int, int]], attn_mask: Tensor | None,
        all_layers: bool,
    ) -> dict[str, Tensor]:
        """RT-DETR: each layer predicts a box update in inverse-sigmoid space of the previous (detached) box.

        Returns the per-layer ``logits`` and ``boxes`` (see :class:`DecoderOutput`). The boxes of layer ``i > 0`` keep the gradient path through the previous layer's box, as in
        the reference training code; the next layer's reference is detached.
        """
        ref = ref_unact.sigmoid()
        prev = ref
        logits, boxes = [], []
        for i, layer in enumerate(self.layers[: self._last_layer(all_layers) + 1]):
            x = layer(x, ref, memory, shapes, self.query_pos_head(ref), attn_mask)
            box = torch.sigmoid(self.dec_bbox_head[i](x) + inverse_sigmoid(prev))
            if all_layers or i == self.eval_idx:
                logits.append(self.dec_score_head[i](x))
                boxes.append(box)
            prev, ref = box, box.detach()
        return {"logits": torch.stack(logits), "boxes": torch.stack(boxes)}

    def _fdr_layers(
        self, x: Tensor, ref_unact: Tensor, memory: Tensor, shapes: list[tuple[int, int]], attn_mask: Tensor | None,
        all_layers: bool,
    ) -> dict[str, Tensor | None]:
        """D-FINE: layer 0 gives a pre-box that becomes the fixed reference; every layer adds a residual to the
        edge distributions (fine-grained distribution refinement) and LQE adjusts its class logits."""
        fdr = self.fdr
        assert fdr is not None
        values = split_levels(memory, shapes, self.layers[0].cross_attn.num_heads)  # no value_proj: shared
        ref = ref_unact.sigmoid()
        x_detached: Tensor | float = 0.0
        corners_sum: Tensor | float = 0.0
        logits, boxes, corners_out, pre = [], [], [], None
        for i, layer in enumerate(self.layers[: self._last_layer(all_layers) + 1]):
            x = layer(x, ref, values, shapes, self.query_pos_head(ref).clamp(-10, 10), attn_mask)
            if i == 0:
                pre_boxes = torch.sigmoid(fdr.pre_bbox_head(x) + inverse_sigmoid(ref))
                initial = pre_boxes.detach()
            corners = self.dec_bbox_head[i](x + x_detached) + corners_sum
            box = distance_to_box(initial, integral(corners, fdr.project), fdr.reg_scale)
            if all_layers or i == self.eval_idx:
                scores = self.dec_score_head[i](x)
                pre = (scores, pre_boxes) if i == 0 else pre
                logits.append(fdr.lqe_layers[i](scores, corners))
                boxes.append(box)
                corners_out.append(corners)
            corners_sum, ref, x_detached = corners, box.detach(), x.detach()
        refs = initial[None].expand(len(boxes), *initial.shape)
        pre_logits, pre_box = pre if pre is not None else (None, None)
        return {
            "logits": torch.stack(logits), "boxes": torch.stack(boxes), "corners": torch.stack(corners_out),
            "refs": refs, "pre_logits": pre_logits, "pre_boxes": pre_box,
        }

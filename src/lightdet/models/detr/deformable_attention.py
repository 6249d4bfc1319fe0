"""Multi-scale deformable attention (Deformable DETR) in pure PyTorch, with RT-DETRv2's options.

Each query attends to a few sampled points per level around its reference box; the sampling is one
``grid_sample`` per level (bilinear, zero padding) or, with RT-DETRv2's ``method="discrete"``, a gather of the
nearest pixel (no interpolation, cheaper on some accelerators). ``num_points`` may differ per level.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

METHODS = ("default", "discrete")


def split_levels(value: Tensor, spatial_shapes: Sequence[tuple[int, int]], num_heads: int) -> list[Tensor]:
    """``[B, N, C]`` flattened levels -> per level ``[B * heads, C / heads, H_l, W_l]``."""
    b, n, c = value.shape
    per_head = value.view(b, n, num_heads, c // num_heads).permute(0, 2, 3, 1).flatten(0, 1)  # [B*h, hd, N]
    sizes = [h * w for h, w in spatial_shapes]
    return [v.reshape(b * num_heads, c // num_heads, h, w) for v, (h, w) in zip(per_head.split(sizes, -1), spatial_shapes)]


def sample_bilinear(value: Tensor, locations: Tensor) -> Tensor:
    """``value [B', hd, H, W]``, ``locations [B', Q, P, 2]`` in ``[0, 1]`` -> ``[B', hd, Q, P]`` (zeros outside)."""
    return F.grid_sample(value, 2 * locations - 1, mode="bilinear", padding_mode="zeros", align_corners=False)


def sample_discrete(value: Tensor, locations: Tensor) -> Tensor:
    """As :func:`sample_bilinear`, but the pixel ``floor(loc * size + 0.5)`` clamped into the map (RT-DETRv2)."""
    bh, hd, h, w = value.shape
    _, q, p, _ = locations.shape
    # scaled per coordinate (not by a [w, h] tensor) so that sizes of a traced graph stay symbolic
    x = (locations[..., 0] * w + 0.5).long().clamp(0, w - 1)  # .long() truncates toward zero, as the reference
    y = (locations[..., 1] * h + 0.5).long().clamp(0, h - 1)
    index = (y * w + x).reshape(bh, 1, q * p).expand(bh, hd, q * p)
    return value.flatten(2).gather(2, index).view(bh, hd, q, p)


def deformable_attention_core(
    values: list[Tensor], locations: Tensor, weights: Tensor, num_points: Sequence[int], method: str = "default"
) -> Tensor:
    """Weighted sum of sampled values.

    Args:
        values: per level ``[B * heads, hd, H_l, W_l]`` (see :func:`split_levels`).
        locations: ``[B, Q, heads, sum(num_points), 2]`` in ``[0, 1]`` (x, y), levels in order.
        weights: ``[B, Q, heads, sum(num_points)]`` attention weights (softmax over all points).
        num_points: points per level.
        method: ``"default"`` (bilinear) or ``"discrete"`` (nearest pixel).

    Returns:
        ``[B, Q, heads * hd]``.
    """
    b, q, heads, total, _ = locations.shape
    sample = sample_bilinear if method == "default" else sample_discrete
    grids = locations.permute(0, 2, 1, 3, 4).flatten(0, 1).split(list(num_points), dim=2)  # [B*h, Q, P_l, 2]
    sampled = torch.cat([sample(v, g) for v, g in zip(values, grids)], dim=-1)  # [B*h, hd, Q, total]
    w = weights.permute(0, 2, 1, 3).reshape(b * heads, 1, q, total)
    out = (sampled * w).sum(-1)  # [B*h, hd, Q]
    return out.view(b, -1, q).transpose(1, 2)


class MSDeformableAttention(nn.Module):
    """Deformable cross-attention from queries to a multi-level memory.

    Args:
        embed_dim: query and memory channels.
        num_heads: attention heads.
        num_levels: memory levels.
        num_points: sampling points per head and level, or a list with one count per level (RT-DETRv2).
        offset_scale: offsets are ``offset / num_points_l * box_wh * offset_scale`` (0.5 in all three papers).
        method: ``"default"`` (bilinear ``grid_sample``) or ``"discrete"`` (nearest pixel, RT-DETRv2).
        value_proj: project the memory (RT-DETR); D-FINE samples the memory directly and has no output proj.

    Shapes: ``query [B, Q, C]``, ``reference [B, Q, 4]`` (cx, cy, w, h in ``[0, 1]``), ``memory [B, N, C]``
    with ``N = sum(H_l * W_l)`` -> ``[B, Q, C]``.
    """

    def __init__(
        self,
        embed_dim: int = 256,
        num_heads: int = 8,
        num_levels: int = 3,
        num_points: int | Sequence[int] = 4,
        *,
        offset_scale: float = 0.5,
        method: str = "default",
        value_proj: bool = True,
    ) -> None:
        super().__init__()
        points = [num_points] * num_levels if isinstance(num_points, int) else list(num_points)
        if len(points) != num_levels or embed_dim % num_heads or method not in METHODS:
            raise ValueError(
                f"MSDeformableAttention: need one point count per level ({num_levels}), embed_dim divisible by "
                f"num_heads and method in {METHODS}; got {points}, {embed_dim}/{num_heads}, {method!r}"
            )
        self.embed_dim, self.num_heads, self.num_points = embed_dim, num_heads, points
        self.offset_scale, self.method = offset_scale, method
        total = num_heads * sum(points)
        self.sampling_offsets = nn.Linear(embed_dim, total * 2)
        self.attention_weights = nn.Linear(embed_dim, total)
        self.value_proj = nn.Linear(embed_dim, embed_dim) if value_proj else None
        self.output_proj = nn.Linear(embed_dim, embed_dim) if value_proj else None
        scale = torch.cat([torch.full((n,), 1.0 / n) for n in points])
        self.register_buffer("point_scale", scale[:, None], persistent=False)  # [sum(P), 1]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Offsets start on rays at ``k * (cos, sin)`` of each head's angle (point k); uniform attention."""
        nn.init.zeros_(self.sampling_offsets.weight)
        thetas = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True).values  # [heads, 2]
        steps = torch.cat([torch.arange(1, n + 1, dtype=torch.float32) for n in self.num_points])
        with torch.no_grad():
            self.sampling_offsets.bias.copy_((grid[:, None, :] * steps[None, :, None]).flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for proj in (self.value_proj, self.output_proj):
            if proj is not None:
                nn.init.xavier_uniform_(proj.weight)
                nn.init.zeros_(proj.bias)

    def values(self, memory: Tensor, spatial_shapes: Sequence[tuple[int, int]]) -> list[Tensor]:
        """The per-level sampling maps of ``memory`` (after ``value_proj`` when there is one)."""
        if self.value_proj is not None:
            memory = self.value_proj(memory)
        return split_levels(memory, spatial_shapes, self.num_heads)

    def forward(
        self,
        query: Tensor,
        reference: Tensor,
        memory: Tensor | list[Tensor],
        spatial_shapes: Sequence[tuple[int, int]],
    ) -> Tensor:
        """``memory`` may be given already split by :meth:`values` (reused across layers without value_proj)."""
        b, q, _ = query.shape
        total = sum(self.num_points)
        values = memory if isinstance(memory, list) else self.values(memory, spatial_shapes)
        offsets = self.sampling_offsets(query).view(b, q, self.num_heads, total, 2)
        weights = self.attention_weights(query).view(b, q, self.num_heads, total).softmax(-1)
        wh = reference[:, :, None, None, 2:]  # [B, Q, 1, 1, 2]
        locations = reference[:, :, None, None, :2] + offsets * self.point_scale * wh * self.offset_scale
        out = deformable_attention_core(values, locations, weights, self.num_points, self.method)
        return self.output_proj(out) if self.output_proj is not None else out

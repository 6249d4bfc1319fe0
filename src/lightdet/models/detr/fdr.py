"""D-FINE's fine-grained distribution refinement (FDR): box edges as distributions over ``reg_max + 1`` bins.

A layer predicts, per box edge, logits over bins whose values follow the non-uniform weighting function
``W(n)`` (fine near zero, coarse at the ends); the edge offset is the expectation ``sum softmax(logits) * W``,
in units of the reference box size divided by ``reg_scale``. The localisation-quality estimator (LQE) adds a
score from the distributions' peakedness to the class logits.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightdet.models.detr.blocks import MLP
from lightdet.models.detr.box_ops import xyxy_to_cxcywh


def weighting_function(reg_max: int, up: float, reg_scale: float) -> Tensor:
    """``W(n)``, ``[reg_max + 1]``: ``-2a, 1 - s^(k-1), ..., 0, ..., s^(k-1) - 1, 2a`` with ``a = up * reg_scale``."""
    bound = abs(up) * abs(reg_scale)
    step = (bound + 1) ** (2 / (reg_max - 2))
    half = reg_max // 2
    left = [-(step**i) + 1 for i in range(half - 1, 0, -1)]
    right = [step**i - 1 for i in range(1, half)]
    return torch.tensor([-2 * bound, *left, 0.0, *right, 2 * bound], dtype=torch.float32)


def distance_to_box(reference: Tensor, distance: Tensor, reg_scale: float) -> Tensor:
    """Edge offsets ``[..., 4]`` (left, top, right, bottom) around ``reference`` cxcywh -> cxcywh boxes."""
    reg_scale = abs(reg_scale)
    cx, cy, w, h = reference.unbind(-1)
    sx, sy = w / reg_scale, h / reg_scale
    x1 = cx - (0.5 * reg_scale + distance[..., 0]) * sx
    y1 = cy - (0.5 * reg_scale + distance[..., 1]) * sy
    x2 = cx + (0.5 * reg_scale + distance[..., 2]) * sx
    y2 = cy + (0.5 * reg_scale + distance[..., 3]) * sy
    return xyxy_to_cxcywh(torch.stack((x1, y1, x2, y2), -1))


def integral(corners: Tensor, project: Tensor) -> Tensor:
    """``[B, Q, 4 * (R + 1)]`` bin logits -> ``[B, Q, 4]`` expected edge offsets under the bin values ``project``."""
    b, q, _ = corners.shape
    probs = corners.view(b, q, 4, -1).softmax(-1)
    return probs @ project.to(probs.dtype)


class LQE(nn.Module):
    """Localisation-quality estimator: ``logits + MLP(top-k probabilities and their mean, per edge)``.

    Shapes: ``scores [B, Q, K]``, ``corners [B, Q, 4 * (reg_max + 1)]`` -> ``[B, Q, K]``.
    """

    def __init__(self, top_k: int = 4, hidden_dim: int = 64, num_layers: int = 2, reg_max: int = 32) -> None:
        super().__init__()
        self.top_k, self.reg_max = top_k, reg_max
        self.reg_conf = MLP(4 * (top_k + 1), hidden_dim, 1, num_layers)
        nn.init.zeros_(self.reg_conf.layers[-1].weight)
        nn.init.zeros_(self.reg_conf.layers[-1].bias)

    def forward(self, scores: Tensor, corners: Tensor) -> Tensor:
        b, q, _ = corners.shape
        probs = corners.view(b, q, 4, self.reg_max + 1).softmax(-1)
        top = probs.topk(self.top_k, dim=-1).values
        stat = torch.cat((top, top.mean(-1, keepdim=True)), -1).view(b, q, -1)
        return scores + self.reg_conf(stat)


def box_to_distance(
    reference: Tensor, boxes: Tensor, reg_max: int, reg_scale: float, up: float, eps: float = 0.1
) -> tuple[Tensor, Tensor, Tensor]:
    """FGL targets: edge offsets of ``boxes`` (xyxy) from ``reference`` (cxcywh), ``[N, 4]`` each, as bins.

    Returns:
        ``(target [N * 4], weight_right [N * 4], weight_left [N * 4])``: the fractional bin index (left bin
        + position between it and the next, clamped to ``[0, reg_max - eps]``) and the interpolation weights
        of the right and left bins.
    """
    reg_scale = abs(reg_scale)
    cx, cy, w, h = reference.unbind(-1)
    sx, sy = w / reg_scale + 1e-16, h / reg_scale + 1e-16
    edges = torch.stack(
        ((cx - boxes[:, 0]) / sx, (cy - boxes[:, 1]) / sy, (boxes[:, 2] - cx) / sx, (boxes[:, 3] - cy) / sy), -1
    ) - 0.5 * reg_scale
    index, weight_right, weight_left = bin_interpolation(edges.reshape(-1), weighting_function(reg_max, up, reg_scale).to(edges))
    return index.clamp(0, reg_max - eps), weight_right, weight_left


def bin_interpolation(values: Tensor, bins: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Left bin index and linear-interpolation weights of ``values [M]`` on the increasing ``bins [R + 1]``.

    Values below the first bin get (0, right 0, left 1); at or beyond the last, (R - 0.1, right 1, left 0).
    """
    reg_max = bins.numel() - 1
    left = (bins[None, :] <= values[:, None]).sum(1) - 1  # [M]
    inside = (left >= 0) & (left < reg_max)
    lo = bins[left.clamp(0, reg_max - 1)]
    hi = bins[(left + 1).clamp(0, reg_max)]
    right_w = (values - lo).abs() / ((values - lo).abs() + (hi - values).abs())
    weight_right = torch.where(inside, right_w, (left >= reg_max).to(values.dtype))
    weight_left = torch.where(inside, 1.0 - right_w, (left < 0).to(values.dtype))
    index = torch.where(left < 0, torch.zeros_like(values), left.to(values.dtype))
    index = torch.where(left >= reg_max, torch.full_like(values, reg_max - 0.1), index)
    return index, weight_right, weight_left


class FDR(nn.Module):
    """D-FINE's decoder parts for distribution refinement: the first layer's pre-box head, one LQE per layer
    and the bin values ``project = W(n)``.

    Args:
        hidden_dim: decoder width.
        num_layers: decoder layers (one LQE each).
        reg_max: bins per edge minus one (32).
        reg_scale, up: shape of the weighting function (4.0 and 0.5).
        lqe_top_k, lqe_hidden_dim, lqe_layers: of the :class:`LQE` heads.
    """

    def __init__(
        self,
        hidden_dim: int = 256,
        num_layers: int = 6,
        *,
        reg_max: int = 32,
        reg_scale: float = 4.0,
        up: float = 0.5,
        lqe_top_k: int = 4,
        lqe_hidden_dim: int = 64,
        lqe_layers: int = 2,
    ) -> None:
        super().__init__()
        self.reg_max, self.reg_scale, self.up = reg_max, reg_scale, up
        self.pre_bbox_head = MLP(hidden_dim, hidden_dim, 4, 3)
        nn.init.zeros_(self.pre_bbox_head.layers[-1].weight)
        nn.init.zeros_(self.pre_bbox_head.layers[-1].bias)
        self.lqe_layers = nn.ModuleList(
            LQE(lqe_top_k, lqe_hidden_dim, lqe_layers, reg_max) for _ in range(num_layers)
        )
        self.register_buffer("project", weighting_function(reg_max, up, reg_scale), persistent=False)

    @property
    def out_dim(self) -> int:
        """Width of each layer's box head: ``4 * (reg_max + 1)`` edge-bin logits."""
        return 4 * (self.reg_max + 1)

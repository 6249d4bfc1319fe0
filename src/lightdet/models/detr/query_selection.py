"""Encoder-side query selection ("two-stage"): every memory token predicts a class and a box around its
grid anchor; the top-``num_queries`` tokens by best class logit become the decoder's initial queries."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lightdet.models.detr.blocks import MLP


def flatten_levels(sources: Sequence[Tensor]) -> tuple[Tensor, list[tuple[int, int]]]:
    """Per level ``[B, C, H_l, W_l]`` -> ``[B, sum(H_l * W_l), C]`` (row-major per level) and the ``(H_l, W_l)``.

    The sizes are read from the shapes as they are: ints eagerly, symbolic when traced or exported (so that
    the anchors and sampling grids of an exported model follow its input size).
    """
    shapes = [(s.shape[2], s.shape[3]) for s in sources]
    return torch.cat([s.flatten(2).transpose(1, 2) for s in sources], 1), shapes


def grid_anchors(
    shapes: Sequence[tuple[int, int]], grid_size: float = 0.05, eps: float = 0.01, device: torch.device | None = None
) -> tuple[Tensor, Tensor]:
    """Anchors at every cell centre of every level, ``w = h = grid_size * 2^level``, in inverse-sigmoid space.

    Returns:
        ``anchors [1, N, 4]`` (invalid ones, with a coordinate outside ``(eps, 1 - eps)``, set to the
        largest float) and ``valid [1, N, 1]`` bool.
    """
    anchors = []
    for level, (h, w) in enumerate(shapes):
        ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
        xy = torch.stack(((xs + 0.5) / w, (ys + 0.5) / h), -1).reshape(-1, 2)
        anchors.append(torch.cat((xy, torch.full_like(xy, grid_size * 2.0**level)), -1))
    boxes = torch.cat(anchors)[None]
    valid = ((boxes > eps) & (boxes < 1 - eps)).all(-1, keepdim=True)
    logits = torch.log(boxes / (1 - boxes))
    return torch.where(valid, logits, torch.finfo(logits.dtype).max), valid


class QuerySelection(nn.Module):
    """Class and box heads on the memory and the top-k selection of the decoder's initial queries.

    Names follow the reference (``enc_output.{proj,norm}``, ``enc_score_head``, ``enc_bbox_head``).
    """

    def __init__(self, hidden_dim: int, num_classes: int, prior_prob: float = 0.01) -> None:
        super().__init__()
        self.enc_output = nn.Sequential()
        self.enc_output.add_module("proj", nn.Linear(hidden_dim, hidden_dim))
        self.enc_output.add_module("norm", nn.LayerNorm(hidden_dim))
        self.enc_score_head = nn.Linear(hidden_dim, num_classes)
        self.enc_bbox_head = MLP(hidden_dim, hidden_dim, 4, 3)
        self._anchor_cache: dict[tuple[tuple[tuple[int, int], ...], torch.device], tuple[Tensor, Tensor]] = {}
        nn.init.xavier_uniform_(self.enc_output.proj.weight)
        nn.init.constant_(self.enc_score_head.bias, -math.log((1 - prior_prob) / prior_prob))
        nn.init.zeros_(self.enc_bbox_head.layers[-1].weight)
        nn.init.zeros_(self.enc_bbox_head.layers[-1].bias)

    def anchors(self, shapes: Sequence[tuple[int, int]], device: torch.device) -> tuple[Tensor, Tensor]:
        """:func:`grid_anchors` of these level sizes, cached (symbolic sizes of a traced graph: computed)."""
        if not all(isinstance(n, int) for shape in shapes for n in shape):
            return grid_anchors(shapes, device=device)
        key = (tuple(shapes), device)
        if key not in self._anchor_cache:
            self._anchor_cache[key] = grid_anchors(shapes, device=device)
        return self._anchor_cache[key]

    def forward(
        self, memory: Tensor, shapes: Sequence[tuple[int, int]], num_queries: int
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``memory [B, N, C]`` -> the selected queries.

        Returns:
            ``content [B, Q, C]`` (detached features), ``ref_unact [B, Q, 4]`` (detached, inverse-sigmoid
            boxes), ``enc_logits [B, Q, K]`` and ``enc_boxes [B, Q, 4]`` (sigmoid) for the encoder loss.
        """
        anchors, valid = self.anchors(shapes, memory.device)
        output = self.enc_output(memory * valid.to(memory.dtype))
        logits = self.enc_score_head(output)
        coords = self.enc_bbox_head(output) + anchors.to(memory.dtype)
        index = logits.max(-1).values.topk(num_queries, dim=1).indices  # [B, Q]
        coords = coords.gather(1, index[..., None].expand(-1, -1, 4))
        enc_logits = logits.gather(1, index[..., None].expand(-1, -1, logits.shape[-1]))
        content = output.gather(1, index[..., None].expand(-1, -1, output.shape[-1])).detach()
        return content, coords.detach(), enc_logits, coords.sigmoid()

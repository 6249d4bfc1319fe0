"""FCOS target assignment (Tian et al. 2019): points inside a box, within their level's distance range."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from lightdet.models.ops.assigner import IGNORED, NEGATIVE


class FCOSAssigner:
    """Assigns each point to the smallest ground-truth box that claims it.

    A box claims a point when the point lies strictly inside it (or, with ``center_sampling``, strictly inside
    the box's centre region: the square of half-size ``radius * stride`` around its centre, cut to the box)
    and the largest of the point's distances ``(l, t, r, b)`` to the box's sides lies in the point's level
    range ``regress_ranges[level]`` (bounds included, as MMDetection). Ties in area go to the first box.
    Negative points inside an ignored (crowd) box are ignored rather than negative.

    Args:
        regress_ranges: per level ``(low, high)`` bounds of ``max(l, t, r, b)`` in pixels; use ``inf`` (or
            any large number) for the last level.
        center_sampling: restrict positives to the centre region.
        center_sample_radius: the centre region's half-size in strides.
    """

    def __init__(
        self,
        regress_ranges: Sequence[Sequence[float]],
        *,
        center_sampling: bool = False,
        center_sample_radius: float = 1.5,
    ) -> None:
        if any(len(r) != 2 or r[0] >= r[1] for r in regress_ranges):
            raise ValueError(f"FCOSAssigner: regress_ranges must be (low, high) pairs, got {regress_ranges}")
        self.regress_ranges = [(float(lo), float(hi)) for lo, hi in regress_ranges]
        self.center_sampling = center_sampling
        self.center_sample_radius = center_sample_radius

    def level_ranges(self, num_points: Sequence[int], device: torch.device | str = "cpu") -> Tensor:
        """``[N, 2]`` ranges of all points, given the number of points on each level."""
        if len(num_points) != len(self.regress_ranges):
            raise ValueError(
                f"FCOSAssigner has {len(self.regress_ranges)} regress_ranges, got {len(num_points)} levels"
            )
        ranges = torch.tensor(self.regress_ranges, device=device)
        return ranges.repeat_interleave(torch.tensor(list(num_points), device=device), dim=0)

    def assign(
        self,
        points: Tensor,
        strides: Tensor,
        ranges: Tensor,
        gt_boxes: Tensor,
        ignore_boxes: Tensor | None = None,
    ) -> Tensor:
        """Matched ground-truth index per point, :data:`NEGATIVE` or :data:`IGNORED`.

        Args:
            points: ``[N, 2]`` (x, y).
            strides: ``[N]`` stride of each point's level (for the centre region).
            ranges: ``[N, 2]`` from :meth:`level_ranges`.
            gt_boxes: ``[G, 4]`` xyxy.
            ignore_boxes: optional ``[M, 4]`` crowd regions.

        Returns:
            ``int64 [N]``.
        """
        n = points.shape[0]
        gt_index = torch.full((n,), NEGATIVE, dtype=torch.int64, device=points.device)
        if gt_boxes.shape[0] and n:
            claims = self._claims(points, strides, ranges, gt_boxes)  # [N, G]
            areas = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])
            masked = torch.where(claims, areas[None, :], math.inf)  # [N, G]
            min_area, best = masked.min(dim=1)
            gt_index = torch.where(torch.isfinite(min_area), best, gt_index)
        if ignore_boxes is not None and ignore_boxes.shape[0] and n:
            x, y = points[:, 0, None], points[:, 1, None]
            bx1, by1, bx2, by2 = ignore_boxes.unbind(-1)
            inside = ((x > bx1) & (y > by1) & (x < bx2) & (y < by2)).any(dim=1)  # [N]
            gt_index[inside & (gt_index == NEGATIVE)] = IGNORED
        return gt_index

    def _claims(self, points: Tensor, strides: Tensor, ranges: Tensor, gt_boxes: Tensor) -> Tensor:
        """bool ``[N, G]``: box ``g`` may take point ``n``."""
        x, y = points[:, 0, None], points[:, 1, None]  # [N, 1]
        x1, y1, x2, y2 = gt_boxes.unbind(-1)  # [G] each
        dist = torch.stack([x - x1, y - y1, x2 - x, y2 - y], dim=-1)  # [N, G, 4]
        if self.center_sampling:
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            r = (strides * self.center_sample_radius)[:, None]  # [N, 1]
            region = torch.stack([
                x - torch.maximum(cx - r, x1), y - torch.maximum(cy - r, y1),
                torch.minimum(cx + r, x2) - x, torch.minimum(cy + r, y2) - y,
            ], dim=-1)
            inside = region.amin(-1) > 0
        else:
            inside = dist.amin(-1) > 0
        reach = dist.amax(-1)
        in_range = (reach >= ranges[:, :1]) & (reach <= ranges[:, 1:])
        return inside & in_range

    def __repr__(self) -> str:
        return (
            f"FCOSAssigner(regress_ranges={self.regress_ranges}, center_sampling={self.center_sampling}, "
            f"center_sample_radius={self.center_sample_radius})"
        )

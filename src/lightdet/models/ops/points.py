"""Anchor points of anchor-free heads (FCOS) and the distance (l, t, r, b) box parametrisation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lightdet.structures import clip_boxes


class PointGenerator:
    """One point per position of every pyramid level, ordered ``(H, W)`` within a level.

    The point of position ``(y, x)`` on a level of stride ``s`` is ``((x + offset) * s, (y + offset) * s)``.

    Args:
        strides: nominal pyramid strides, e.g. ``(8, 16, 32, 64, 128)``.
        offset: position offset as a fraction of the stride: 0.5 (MMDetection, the cell centre) or 0
            (torchvision's FCOS, whose points are the centres of stride-sized anchors at ``x * s``).
        strides_from_image: place points with ``padded_image_size // feature_size`` per axis as torchvision
            does (differs from the nominal stride when the size is not divisible, e.g. on P7).
    """

    def __init__(
        self, strides: Sequence[int], *, offset: float = 0.5, strides_from_image: bool = False
    ) -> None:
        self.strides = [int(s) for s in strides]
        self.offset = offset
        self.strides_from_image = strides_from_image

    def __call__(
        self,
        feature_sizes: Sequence[tuple[int, int]],
        padded_size: tuple[int, int],
        device: torch.device | str = "cpu",
    ) -> list[Tensor]:
        """Points of each level, ``[H_i * W_i, 2]`` as ``(x, y)`` in padded-batch pixels."""
        if len(feature_sizes) != len(self.strides):
            raise ValueError(
                f"PointGenerator has {len(self.strides)} strides, got {len(feature_sizes)} feature maps"
            )
        points = []
        for (h, w), s in zip(feature_sizes, self.strides):
            sy, sx = (padded_size[0] // h, padded_size[1] // w) if self.strides_from_image else (s, s)
            ys = (torch.arange(h, device=device, dtype=torch.float32) + self.offset) * sy
            xs = (torch.arange(w, device=device, dtype=torch.float32) + self.offset) * sx
            yy, xx = torch.meshgrid(ys, xs, indexing="ij")
            points.append(torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=-1))
        return points

    def for_pyramid(self, feats: Sequence[Tensor], padded_size: tuple[int, int]) -> list[Tensor]:
        """Points of each level of the pyramid ``feats`` (``[B, C, H_i, W_i]``) of a batch padded to
        ``padded_size``."""
        sizes = [(int(f.shape[-2]), int(f.shape[-1])) for f in feats]
        return self(sizes, padded_size, device=feats[0].device)

    def flatten(self, level_points: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        """All levels' points ``[N, 2]`` and the stride of each ``[N]``."""
        points = torch.cat(list(level_points))
        strides = torch.cat([points.new_full((len(p),), float(s)) for p, s in zip(level_points, self.strides)])
        return points, strides

    def __repr__(self) -> str:
        return (
            f"PointGenerator(strides={self.strides}, offset={self.offset}, "
            f"strides_from_image={self.strides_from_image})"
        )


def distance_to_box(points: Tensor, distances: Tensor, image_size: tuple[int, int] | None = None) -> Tensor:
    """``points [N, 2]`` (x, y) and ``distances [N, 4]`` (l, t, r, b) -> boxes ``[N, 4]`` xyxy.

    With ``image_size = (h, w)`` the boxes are clipped to the image.
    """
    boxes = torch.cat([points - distances[:, :2], points + distances[:, 2:]], dim=-1)
    if image_size is None:
        return boxes
    return clip_boxes(boxes, image_size)


def box_to_distance(points: Tensor, boxes: Tensor) -> Tensor:
    """``points [N, 2]`` and boxes ``[N, 4]`` -> distances ``[N, 4]`` (l, t, r, b) from each point."""
    return torch.cat([points - boxes[:, :2], boxes[:, 2:] - points], dim=-1)


def centerness(distances: Tensor) -> Tensor:
    """FCOS centre-ness ``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))`` of ``[N, 4]`` -> ``[N]``."""
    lr, tb = distances[:, 0::2], distances[:, 1::2]
    ratio = (lr.amin(-1) / lr.amax(-1).clamp(min=1e-12)) * (tb.amin(-1) / tb.amax(-1).clamp(min=1e-12))
    return ratio.clamp(min=0).sqrt()

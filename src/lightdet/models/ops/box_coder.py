"""The (dx, dy, dw, dh) box parametrisation of R-CNN (Girshick et al.), MMDetection's DeltaXYWHBBoxCoder."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from lightdet.structures import clip_boxes


class DeltaXYWHCoder:
    """Encodes boxes as normalised offsets from prior boxes (anchors or proposals) and back.

    ``dx = (gx - px) / pw``, ``dy = (gy - py) / ph``, ``dw = log(gw / pw)``, ``dh = log(gh / ph)``
    (centres and sizes, no "+1"), then ``(d - means) / stds``. ``stds = (0.1, 0.1, 0.2, 0.2)`` equals
    torchvision's ``BoxCoder(weights=(10, 10, 5, 5))``.

    Args:
        means, stds: normalisation of the deltas.
        max_log_ratio: decoded ``dw``/``dh`` are clamped to this magnitude (``log(1000 / 16)``: a box grows at
            most 62.5x).
        clamp_both_sides: clamp ``dw``/``dh`` from below too (MMDetection); torchvision clamps only from
            above.
    """

    def __init__(
        self,
        means: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
        stds: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
        *,
        max_log_ratio: float = math.log(1000.0 / 16),
        clamp_both_sides: bool = True,
    ) -> None:
        if len(means) != 4 or len(stds) != 4:
            raise ValueError(f"DeltaXYWHCoder: means and stds need 4 values, got {list(means)}, {list(stds)}")
        self.means = tuple(float(m) for m in means)
        self.stds = tuple(float(s) for s in stds)
        self.max_log_ratio = max_log_ratio
        self.clamp_both_sides = clamp_both_sides

    def encode(self, priors: Tensor, targets: Tensor) -> Tensor:
        """``priors [N, 4]``, ``targets [N, 4]`` (xyxy) -> normalised deltas ``[N, 4]``."""
        pw = priors[:, 2] - priors[:, 0]
        ph = priors[:, 3] - priors[:, 1]
        px = priors[:, 0] + 0.5 * pw
        py = priors[:, 1] + 0.5 * ph
        gw = targets[:, 2] - targets[:, 0]
        gh = targets[:, 3] - targets[:, 1]
        gx = targets[:, 0] + 0.5 * gw
        gy = targets[:, 1] + 0.5 * gh
        deltas = torch.stack([(gx - px) / pw, (gy - py) / ph, torch.log(gw / pw), torch.log(gh / ph)], dim=-1)
        return (deltas - deltas.new_tensor(self.means)) / deltas.new_tensor(self.stds)

    def decode(self, priors: Tensor, deltas: Tensor, image_size: tuple[int, int] | None = None) -> Tensor:
        """Applies deltas to priors.

        Args:
            priors: ``[N, 4]`` xyxy.
            deltas: ``[N, 4]`` or ``[N, K, 4]`` (one set per class).
            image_size: ``(h, w)``; when given the boxes are clipped to ``[0, w] x [0, h]``.

        Returns:
            boxes shaped like ``deltas``.
        """
        d = deltas * deltas.new_tensor(self.stds) + deltas.new_tensor(self.means)
        if deltas.dim() == 3:
            priors = priors[:, None, :]
        pw = priors[..., 2] - priors[..., 0]
        ph = priors[..., 3] - priors[..., 1]
        px = priors[..., 0] + 0.5 * pw
        py = priors[..., 1] + 0.5 * ph
        low = -self.max_log_ratio if self.clamp_both_sides else None
        dw = d[..., 2].clamp(min=low, max=self.max_log_ratio)
        dh = d[..., 3].clamp(min=low, max=self.max_log_ratio)
        cx = d[..., 0] * pw + px
        cy = d[..., 1] * ph + py
        half_w = 0.5 * (torch.exp(dw) * pw)
        half_h = 0.5 * (torch.exp(dh) * ph)
        boxes = torch.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=-1)
        return clip_boxes(boxes, image_size) if image_size is not None else boxes

    def __repr__(self) -> str:
        return (
            f"DeltaXYWHCoder(means={self.means}, stds={self.stds}, max_log_ratio={self.max_log_ratio:.4f}, "
            f"clamp_both_sides={self.clamp_both_sides})"
        )

"""Anchor generation for feature pyramids, in MMDetection's and torchvision's variants."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


class AnchorGenerator:
    """Anchors for every position of every pyramid level, ordered ``(H, W, A)`` within a level.

    Per level ``i`` the base anchors are all ``(ratio, scale)`` pairs (ratio-major), of size
    ``base_sizes[i] * scale`` with ``ratio = h / w`` (``h = size * sqrt(ratio)``, ``w = size / sqrt(ratio)``),
    centred on ``center_offset * stride`` (MMDetection: 0; some legacy configs 0.5).

    Args:
        strides: pyramid strides, e.g. ``(4, 8, 16, 32, 64)``.
        ratios: aspect ratios ``h / w``.
        scales: multipliers of the base size (MMDetection's ``scales=[8]``: sizes 32..512 on strides 4..64).
            Exactly one of ``scales`` / ``octave_base_scale`` (with ``scales_per_octave``) / ``sizes`` is
            used.
        base_sizes: per-level base size; defaults to the strides.
        octave_base_scale, scales_per_octave: RetinaNet-style scales ``base * 2 ** (i / n)``, ``i < n``.
        sizes: per level, the anchor sizes as given (the same count on every level), as torchvision's
            ``AnchorGenerator(sizes, aspect_ratios)``: its RetinaNet lists truncated sizes
            ``(32, 40, 50), (64, 80, 101), ...`` that no set of shared scales reproduces.
        center_offset: anchor centre offset, as a fraction of the stride.
        round_base_anchors: round base anchor coordinates to integers (torchvision's ``AnchorGenerator``).
        strides_from_image: take each level's stride as ``padded_image_size // feature_size`` per axis, as
            torchvision does (this differs from the nominal stride where the size is not divisible, e.g.
            800 // 13 = 61 on P6); otherwise the configured strides are used (MMDetection).
    """

    def __init__(
        self,
        strides: Sequence[int],
        ratios: Sequence[float] = (0.5, 1.0, 2.0),
        scales: Sequence[float] | None = (8.0,),
        *,
        base_sizes: Sequence[float] | None = None,
        octave_base_scale: float | None = None,
        scales_per_octave: int | None = None,
        sizes: Sequence[Sequence[float]] | None = None,
        center_offset: float = 0.0,
        round_base_anchors: bool = False,
        strides_from_image: bool = False,
    ) -> None:
        octave = octave_base_scale is not None
        if (octave + (scales is not None) + (sizes is not None)) != 1 or octave != (scales_per_octave is not None):
            raise ValueError(
                "AnchorGenerator: give exactly one of scales, sizes, or octave_base_scale with scales_per_octave"
            )
        if octave_base_scale is not None:
            scales = [octave_base_scale * 2 ** (i / scales_per_octave) for i in range(scales_per_octave)]
        if base_sizes is not None and len(base_sizes) != len(strides):
            raise ValueError(f"AnchorGenerator: {len(base_sizes)} base_sizes for {len(strides)} strides")
        counts = {len(level) for level in sizes} if sizes is not None else set()
        if sizes is not None and (len(sizes) != len(strides) or len(counts) != 1):
            raise ValueError(
                f"AnchorGenerator: need one equally long size list per stride, got {len(sizes)} lists "
                f"of lengths {sorted(counts)} for {len(strides)} strides"
            )
        self.strides = [int(s) for s in strides]
        self.base_sizes = [float(b) for b in (base_sizes if base_sizes is not None else strides)]
        self.ratios = [float(r) for r in ratios]
        self.sizes = [[float(x) for x in level] for level in sizes] if sizes is not None else None
        self.scales = [float(s) for s in scales] if scales is not None else [1.0] * counts.pop()
        self.center_offset = center_offset
        self.round_base_anchors = round_base_anchors
        self.strides_from_image = strides_from_image
        self.base_anchors = [self._base_anchors(i) for i in range(len(self.strides))]

    @property
    def num_base_anchors(self) -> int:
        """Anchors per position (the same on every level)."""
        return len(self.ratios) * len(self.scales)

    def _base_anchors(self, level: int) -> Tensor:
        """``[A, 4]`` anchors centred on the first position of ``level``, ratio-major."""
        h_ratios = torch.tensor(self.ratios).sqrt()
        if self.sizes is not None:
            sizes = torch.tensor(self.sizes[level])
            ws = (sizes[None, :] / h_ratios[:, None]).reshape(-1)
            hs = (sizes[None, :] * h_ratios[:, None]).reshape(-1)
        else:
            base_size, scales = self.base_sizes[level], torch.tensor(self.scales)
            ws = (base_size * (1 / h_ratios)[:, None] * scales[None, :]).reshape(-1)
            hs = (base_size * h_ratios[:, None] * scales[None, :]).reshape(-1)
        c = self.center_offset * self.strides[level]
        anchors = torch.stack([c - 0.5 * ws, c - 0.5 * hs, c + 0.5 * ws, c + 0.5 * hs], dim=-1)
        return anchors.round() if self.round_base_anchors else anchors

    def level_strides(
        self, feature_sizes: Sequence[tuple[int, int]], padded_size: tuple[int, int]
    ) -> list[tuple[int, int]]:
        """Per-level ``(stride_y, stride_x)`` used to place anchors."""
        if len(feature_sizes) != len(self.strides):
            raise ValueError(
                f"AnchorGenerator has {len(self.strides)} strides, got {len(feature_sizes)} feature maps"
            )
        if not self.strides_from_image:
            return [(s, s) for s in self.strides]
        return [(padded_size[0] // h, padded_size[1] // w) for h, w in feature_sizes]

    def __call__(
        self,
        feature_sizes: Sequence[tuple[int, int]],
        padded_size: tuple[int, int],
        device: torch.device | str = "cpu",
    ) -> list[Tensor]:
        """Anchors of each level: ``[H_i * W_i * A, 4]`` (xyxy, padded-batch pixels), order ``(H, W, A)``.

        Args:
            feature_sizes: ``(H_i, W_i)`` of each level's feature map.
            padded_size: ``(H, W)`` of the padded input batch (used with ``strides_from_image``).
        """
        anchors = []
        strides = self.level_strides(feature_sizes, padded_size)
        for (h, w), (sy, sx), base in zip(feature_sizes, strides, self.base_anchors):
            ys = torch.arange(h, device=device, dtype=torch.float32) * sy
            xs = torch.arange(w, device=device, dtype=torch.float32) * sx
            yy, xx = torch.meshgrid(ys, xs, indexing="ij")
            shifts = torch.stack([xx, yy, xx, yy], dim=-1).reshape(-1, 1, 4)  # [H*W, 1, 4]
            anchors.append((shifts + base.to(device)[None]).reshape(-1, 4))
        return anchors

    def __repr__(self) -> str:
        return (
            f"AnchorGenerator(strides={self.strides}, ratios={self.ratios}, scales={self.scales}, "
            f"base_sizes={self.base_sizes}, sizes={self.sizes}, center_offset={self.center_offset}, "
            f"round_base_anchors={self.round_base_anchors}, strides_from_image={self.strides_from_image})"
        )


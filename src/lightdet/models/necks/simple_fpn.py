"""ViTDet's simple feature pyramid (Li et al. 2022): a pyramid from the single map of a plain ViT."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.convnext import LayerNorm2d


def _conv_ln(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    """Conv (no bias) -> channel LayerNorm, keys ``conv`` and ``ln``."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
    return nn.Sequential(OrderedDict(conv=conv, ln=LayerNorm2d(out_channels)))


def _rescale(channels: int, factor: float) -> tuple[nn.Module, int]:
    """The module that resizes a map by ``factor`` (4, 2, 1 or 0.5) and its output channels."""
    if factor == 4:
        up = nn.Sequential(
            nn.ConvTranspose2d(channels, channels // 2, 2, stride=2), LayerNorm2d(channels // 2), nn.GELU(),
            nn.ConvTranspose2d(channels // 2, channels // 4, 2, stride=2),
        )  # fmt: skip
        return up, channels // 4
    if factor == 2:
        return nn.ConvTranspose2d(channels, channels // 2, 2, stride=2), channels // 2
    if factor == 1:
        return nn.Identity(), channels
    if factor == 0.5:
        return nn.MaxPool2d(2, 2), channels
    raise ValueError(f"SimpleFPN scale factors must be among 4, 2, 1, 0.5, got {factor}")


class SimpleFPN(nn.Module):
    """Deconvolutions and pooling make strides ``s/4 .. 2s`` from a stride-``s`` map; each level then gets a
    1x1 and a 3x3 conv with LayerNorm (``lateral_convs.{i}``, ``fpn_convs.{i}``); extra levels are
    max-pools (kernel 1, stride 2) of the last one. As MMDetection's ViTDet ``SimpleFPN``.

    Args:
        in_channels: the backbone's channels; its last map is used (a plain ViT returns one).
        out_channels: channels of every output level.
        num_outs: output levels, at least ``len(scale_factors)``.
        scale_factors: resize factor of each level, finest first (ViTDet: 4, 2, 1, 0.5).
        in_strides: the backbone's strides (the last is used); None: 16.

    Attributes:
        strides: of each output level (16 / 4, ..., then doubling).

    ``forward``: the backbone's maps (the last one ``[B, C, H, W]``) -> ``num_outs`` maps ``[B, out_channels, ., .]``.
    """

    def __init__(
        self,
        in_channels: Sequence[int] | int,
        out_channels: int = 256,
        num_outs: int = 5,
        *,
        scale_factors: Sequence[float] = (4.0, 2.0, 1.0, 0.5),
        in_strides: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        channels = in_channels if isinstance(in_channels, int) else int(list(in_channels)[-1])
        stride = 16 if in_strides is None else int(list(in_strides)[-1])
        if num_outs < len(scale_factors):
            raise ValueError(
                f"SimpleFPN: num_outs={num_outs} is fewer than the {len(scale_factors)} scale factors"
            )
        rescales = [_rescale(channels, float(f)) for f in scale_factors]
        self.rescales = nn.ModuleList(module for module, _ in rescales)
        self.lateral_convs = nn.ModuleList(_conv_ln(c, out_channels, 1) for _, c in rescales)
        self.fpn_convs = nn.ModuleList(_conv_ln(out_channels, out_channels, 3) for _ in rescales)
        level_strides = [int(stride / float(f)) for f in scale_factors]
        self.strides = [
            *level_strides,
            *(level_strides[-1] * 2 ** (i + 1) for i in range(num_outs - len(scale_factors))),
        ]
        self.out_channels, self.num_outs = out_channels, num_outs

    def forward(self, inputs: Sequence[Tensor]) -> list[Tensor]:
        x = inputs[-1]
        outs = [
            fpn(lat(rescale(x)))
            for rescale, lat, fpn in zip(self.rescales, self.lateral_convs, self.fpn_convs)
        ]
        while len(outs) < self.num_outs:
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return outs

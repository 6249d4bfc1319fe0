"""RTMDet's neck: a path-aggregation pyramid built from CSP layers, with MMDetection's module names."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightdet.models.backbones.csp_layers import ConvNormAct, CSPLayer, conv_unit


class CSPNeXtPAFPN(nn.Module):
    """Top-down then bottom-up CSP fusion over the backbone's maps, and a 3x3 conv unit per output level.

    Top-down, from the coarsest level: a 1x1 ``reduce_layers`` unit to the next finer width, nearest 2x
    upsampling, concat with the finer input, a ``top_down_blocks`` CSP layer. Bottom-up: a stride-2
    ``downsamples`` unit, concat with the reduced map of that level, a ``bottom_up_blocks`` CSP layer.
    ``out_convs`` bring every level to ``out_channels``.

    Args:
        in_channels: widths of the backbone maps, finest first.
        out_channels: width of every output level.
        num_csp_blocks: blocks per CSP layer (RTMDet tiny/s 1, m 2, l 3, x 4).
        expand_ratio: CSP branch width ratio.
        depthwise: depthwise-separable downsampling units.
        norm, act: norm name and activation.
        in_strides: strides of the inputs (the outputs have the same); None: 8, 16, 32, ...

    Attributes:
        strides: of each output level (what the heads read).

    ``forward``: maps ``[B, in_channels[i], H_i, W_i]`` -> as many ``[B, out_channels, H_i, W_i]``.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int,
        *,
        num_csp_blocks: int = 3,
        expand_ratio: float = 0.5,
        depthwise: bool = False,
        norm: str = "BN",
        act: str = "SiLU",
        in_strides: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        chans = [int(c) for c in in_channels]
        if len(chans) < 2:
            raise ValueError(f"CSPNeXtPAFPN needs at least two input levels, got in_channels={chans}")
        self.in_channels, self.out_channels = chans, out_channels
        self.strides = [2 ** (i + 3) for i in range(len(chans))] if in_strides is None else list(in_strides)
        if len(self.strides) != len(chans):
            raise ValueError(f"CSPNeXtPAFPN: {len(self.strides)} in_strides for {len(chans)} inputs")
        csp = dict(
            num_blocks=num_csp_blocks, expand_ratio=expand_ratio, add_identity=False, norm=norm, act=act
        )
        coarse_to_fine = range(len(chans) - 1, 0, -1)
        self.reduce_layers = nn.ModuleList(
            ConvNormAct(chans[i], chans[i - 1], 1, norm=norm, act=act) for i in coarse_to_fine
        )
        self.top_down_blocks = nn.ModuleList(
            CSPLayer(chans[i - 1] * 2, chans[i - 1], **csp) for i in coarse_to_fine
        )
        self.downsamples = nn.ModuleList(
            conv_unit(chans[i], chans[i], 3, stride=2, depthwise=depthwise, norm=norm, act=act)
            for i in range(len(chans) - 1)
        )
        self.bottom_up_blocks = nn.ModuleList(
            CSPLayer(chans[i] * 2, chans[i + 1], **csp) for i in range(len(chans) - 1)
        )
        self.out_convs = nn.ModuleList(ConvNormAct(c, out_channels, 3, norm=norm, act=act) for c in chans)

    def _top_down(self, inputs: Sequence[Tensor]) -> list[Tensor]:
        """Per level, finest first: the fused top-down map (the coarsest level: its reduced input)."""
        outs = [inputs[-1]]
        for step, i in enumerate(range(len(inputs) - 1, 0, -1)):
            reduced = self.reduce_layers[step](outs[0])
            outs[0] = reduced
            up = F.interpolate(reduced, scale_factor=2.0, mode="nearest")
            outs.insert(0, self.top_down_blocks[step](torch.cat([up, inputs[i - 1]], dim=1)))
        return outs

    def forward(self, inputs: Sequence[Tensor]) -> list[Tensor]:
        if len(inputs) != len(self.in_channels):
            raise ValueError(f"CSPNeXtPAFPN built for {len(self.in_channels)} inputs got {len(inputs)}")
        inner = self._top_down(inputs)
        outs = [inner[0]]
        for i in range(len(inputs) - 1):
            down = self.downsamples[i](outs[-1])
            outs.append(self.bottom_up_blocks[i](torch.cat([down, inner[i + 1]], dim=1)))
        return [conv(x) for conv, x in zip(self.out_convs, outs)]

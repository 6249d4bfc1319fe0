"""Feature Pyramid Network (Lin et al. 2017) with MMDetection's options and parameter names."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from lightdet.models.layers import ConvModule

_EXTRA_SOURCES = ("on_input", "on_lateral", "on_output")


class FPN(nn.Module):
    """Top-down pyramid with lateral 1x1 convs and 3x3 output convs, plus extra coarser levels.

    Args:
        in_channels: channels of each backbone feature map, finest first.
        out_channels: channels of every output level.
        num_outs: number of output levels; levels beyond the used inputs are "extra" levels.
        start_level: first backbone level used (e.g. 1 skips C2, as RetinaNet does).
        add_extra_convs: ``False`` makes each extra level a max-pool (kernel 1, stride 2) of the previous
            output; otherwise extra levels are 3x3 stride-2 convs fed from the last used input
            (``"on_input"``), its lateral (``"on_lateral"``) or its output (``"on_output"``); ``True``
            means ``"on_input"``.
        relu_before_extra_convs: apply ReLU before every extra conv after the first.
        norm: optional norm for all convs (``"BN"``, ``"GN"``, ...); convs then have no bias.
        in_strides: stride of each backbone feature map; None: 4, 8, 16, ... (ResNet's C2, C3, ...).

    Attributes:
        strides: stride of each output level: the used inputs' strides, then each extra level twice the
            previous one (what the heads' anchor / point generators and RoI extractors read).

    Parameter names follow MMDetection: ``lateral_convs.{i}.conv``, ``fpn_convs.{i}.conv`` (extra convs
    continue the ``fpn_convs`` numbering).

    ``forward``: list of ``[B, in_channels[i], H_i, W_i]`` -> ``num_outs`` maps ``[B, out_channels, ., .]``.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        out_channels: int,
        num_outs: int,
        *,
        start_level: int = 0,
        add_extra_convs: bool | str = False,
        relu_before_extra_convs: bool = False,
        norm: str | None = None,
        in_strides: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = list(in_channels)
        used = len(self.in_channels) - start_level
        if not 0 <= start_level < len(self.in_channels) or num_outs < used:
            raise ValueError(
                f"FPN: start_level={start_level} and num_outs={num_outs} do not fit "
                f"{len(self.in_channels)} inputs "
                "(need 0 <= start_level < inputs and num_outs >= inputs - start_level)"
            )
        self.strides = _output_strides(len(self.in_channels), in_strides, start_level, num_outs)
        if add_extra_convs is True:
            add_extra_convs = "on_input"
        if add_extra_convs not in (False, *_EXTRA_SOURCES):
            raise ValueError(
                f"FPN add_extra_convs must be False, True or one of {_EXTRA_SOURCES}, got {add_extra_convs!r}"
            )
        self.out_channels, self.num_outs, self.start_level = out_channels, num_outs, start_level
        self.add_extra_convs = add_extra_convs
        self.relu_before_extra_convs = relu_before_extra_convs
        self.lateral_convs = nn.ModuleList(
            ConvModule(c, out_channels, 1, norm=norm) for c in self.in_channels[start_level:]
        )
        self.fpn_convs = nn.ModuleList(
            ConvModule(out_channels, out_channels, 3, padding=1, norm=norm) for _ in range(used)
        )
        if add_extra_convs:
            for i in range(num_outs - used):
                src = self.in_channels[-1] if i == 0 and add_extra_convs == "on_input" else out_channels
                self.fpn_convs.append(ConvModule(src, out_channels, 3, stride=2, padding=1, norm=norm))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, inputs: Sequence[Tensor]) -> list[Tensor]:
        if len(inputs) != len(self.in_channels):
            raise ValueError(f"FPN built for {len(self.in_channels)} inputs got {len(inputs)}")
        laterals = [conv(inputs[i + self.start_level]) for i, conv in enumerate(self.lateral_convs)]
        for i in range(len(laterals) - 1, 0, -1):
            top_down = F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:], mode="nearest")
            laterals[i - 1] = laterals[i - 1] + top_down
        outs = [self.fpn_convs[i](lat) for i, lat in enumerate(laterals)]
        return outs + self._extra_levels(inputs[-1], laterals[-1], outs[-1])

    def _extra_levels(self, last_input: Tensor, last_lateral: Tensor, last_out: Tensor) -> list[Tensor]:
        """The ``num_outs - used`` coarser levels, each half the size of the previous one."""
        extra: list[Tensor] = []
        used = len(self.lateral_convs)
        for i in range(self.num_outs - used):
            prev = extra[-1] if extra else last_out
            if not self.add_extra_convs:
                extra.append(F.max_pool2d(prev, 1, stride=2))
                continue
            if not extra:
                sources = {"on_input": last_input, "on_lateral": last_lateral, "on_output": last_out}
                src = sources[self.add_extra_convs]
                extra.append(self.fpn_convs[used](src))
            else:
                x = F.relu(prev) if self.relu_before_extra_convs else prev
                extra.append(self.fpn_convs[used + i](x))
        return extra


def _output_strides(
    num_ins: int, in_strides: Sequence[int] | None, start_level: int, num_outs: int
) -> list[int]:
    """Strides of the ``num_outs`` output levels: the inputs' from ``start_level`` on, then doubling."""
    strides = [2 ** (i + 2) for i in range(num_ins)] if in_strides is None else [int(s) for s in in_strides]
    if len(strides) != num_ins:
        raise ValueError(f"FPN: {len(strides)} in_strides {strides} for {num_ins} inputs")
    out = strides[start_level:]
    while len(out) < num_outs:
        out.append(out[-1] * 2)
    return out

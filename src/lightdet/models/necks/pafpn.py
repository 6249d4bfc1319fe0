"""PAFPN (PANet, Liu et al. 2018): FPN's top-down pyramid followed by a bottom-up path augmentation."""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from lightdet.models.layers import ConvModule
from lightdet.models.necks.fpn import FPN

_EXTRA_SOURCES = ("on_input", "on_output")


class PAFPN(nn.Module):
    """:class:`~lightdet.models.FPN` (``fpn``), then the bottom-up path of MMDetection's ``PAFPN``.

    With ``P_i`` the FPN outputs (finest first): ``M_0 = P_0``, ``M_{i+1} = P_{i+1} + down_i(M_i)`` with a
    3x3 stride-2 conv ``downsample_convs.{i}``; the outputs are ``P_0`` and ``pafpn_convs.{i}(M_{i+1})``
    (3x3). Levels beyond the inputs are max-pools (kernel 1, stride 2) of the previous output, or a 3x3
    stride-2 conv ``extra_convs.{j}`` fed from the last used input (``"on_input"``) or output
    (``"on_output"``), later ones from the previous extra level (after a ReLU with
    ``relu_before_extra_convs``).

    Args:
        in_channels, out_channels, num_outs, start_level, norm, in_strides: as :class:`~lightdet.models.FPN`.
        add_extra_convs: False, True (``"on_input"``), ``"on_input"`` or ``"on_output"``.
        relu_before_extra_convs: ReLU before every extra conv after the first.

    Attributes:
        strides: of each output level.

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
        used = len(in_channels) - start_level
        add_extra_convs = "on_input" if add_extra_convs is True else add_extra_convs
        if add_extra_convs not in (False, *_EXTRA_SOURCES):
            raise ValueError(
                f"PAFPN add_extra_convs must be False, True or one of {_EXTRA_SOURCES}, got {add_extra_convs!r}"
            )
        if num_outs < used:
            raise ValueError(f"PAFPN: num_outs={num_outs} is fewer than the {used} used inputs")
        self.fpn = FPN(
            in_channels, out_channels, used, start_level=start_level, norm=norm, in_strides=in_strides
        )
        self.in_channels, self.out_channels, self.num_outs = list(in_channels), out_channels, num_outs
        self.strides = [
            *self.fpn.strides,
            *(self.fpn.strides[-1] * 2 ** (i + 1) for i in range(num_outs - used)),
        ]
        self.downsample_convs = nn.ModuleList(
            ConvModule(out_channels, out_channels, 3, stride=2, padding=1, norm=norm) for _ in range(used - 1)
        )
        self.pafpn_convs = nn.ModuleList(
            ConvModule(out_channels, out_channels, 3, padding=1, norm=norm) for _ in range(used - 1)
        )
        self.add_extra_convs, self.relu_before_extra_convs = add_extra_convs, relu_before_extra_convs
        first_extra = self.in_channels[-1] if add_extra_convs == "on_input" else out_channels
        self.extra_convs = nn.ModuleList(
            ConvModule(
                first_extra if j == 0 else out_channels, out_channels, 3, stride=2, padding=1, norm=norm
            )
            for j in range(num_outs - used if add_extra_convs else 0)
        )
        for m in [*self.downsample_convs.modules(), *self.pafpn_convs.modules(), *self.extra_convs.modules()]:
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, inputs: Sequence[Tensor]) -> list[Tensor]:
        tops = self.fpn(inputs)  # P_start .. P_last
        merged = [tops[0]]
        for top, down in zip(tops[1:], self.downsample_convs):
            merged.append(top + down(merged[-1]))
        outs = [tops[0], *(conv(m) for conv, m in zip(self.pafpn_convs, merged[1:]))]
        return outs + self._extra_levels(inputs[-1], outs[-1])

    def _extra_levels(self, last_input: Tensor, last_out: Tensor) -> list[Tensor]:
        """The ``num_outs - used`` coarser levels, each half the size of the previous one."""
        extra: list[Tensor] = []
        for j in range(self.num_outs - len(self.fpn.strides)):
            prev = extra[-1] if extra else last_out
            if not self.add_extra_convs:
                extra.append(F.max_pool2d(prev, 1, stride=2))
            elif j == 0:
                extra.append(
                    self.extra_convs[0](last_input if self.add_extra_convs == "on_input" else last_out)
                )
            else:
                extra.append(self.extra_convs[j](F.relu(prev) if self.relu_before_extra_convs else prev))
        return extra

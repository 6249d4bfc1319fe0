"""Cross-stage-partial building blocks of CSPNeXt and its PAFPN (RTMDet, Lyu et al. 2022).

Module and parameter names follow MMDetection's (``conv``/``bn`` of a conv unit, ``depthwise_conv`` /
``pointwise_conv``, ``main_conv``/``short_conv``/``final_conv``/``blocks``/``attention.fc``), so its RTMDet
checkpoints load without renaming. Every unit is conv -> norm -> activation (SiLU by default).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightdet.models.layers import build_norm, norm_attribute

ACTIVATIONS = ("SiLU", "ReLU")


def build_activation(act: str | None) -> nn.Module:
    """``"SiLU"`` / ``"ReLU"`` modules (no parameters), or identity for None."""
    if act is None:
        return nn.Identity()
    if act == "SiLU":
        return nn.SiLU(inplace=True)
    if act == "ReLU":
        return nn.ReLU(inplace=True)
    raise ValueError(f"act must be one of {ACTIVATIONS} or None, got {act!r}")


class ConvNormAct(nn.Module):
    """``Conv2d`` (padding ``kernel_size // 2``) -> norm -> activation; MMDetection's ``ConvModule`` names.

    The conv has a bias only without a norm layer. Shapes: ``[B, C_in, H, W] -> [B, C_out, H / s, W / s]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        groups: int = 1,
        norm: str | None = "BN",
        act: str | None = "SiLU",
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, kernel_size // 2, groups=groups, bias=norm is None
        )
        self.norm_name = norm_attribute(norm) if norm is not None else None
        if norm is not None:
            self.add_module(self.norm_name, build_norm(norm, out_channels))
        self.act = build_activation(act)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.norm_name is not None:
            x = getattr(self, self.norm_name)(x)
        return self.act(x)


class DepthwiseSeparableConv(nn.Module):
    """A depthwise ``kernel_size`` conv unit then a pointwise 1x1 conv unit (``depthwise_conv``,
    ``pointwise_conv``), each with norm and activation."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1, norm: str = "BN",
        act: str = "SiLU",
    ) -> None:  # fmt: skip
        super().__init__()
        self.depthwise_conv = ConvNormAct(
            in_channels, in_channels, kernel_size, stride=stride, groups=in_channels, norm=norm, act=act
        )
        self.pointwise_conv = ConvNormAct(in_channels, out_channels, 1, norm=norm, act=act)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise_conv(self.depthwise_conv(x))


def conv_unit(
    in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1, depthwise: bool, norm: str,
    act: str,
) -> nn.Module:  # fmt: skip
    """A :class:`DepthwiseSeparableConv` when ``depthwise``, else a :class:`ConvNormAct`."""
    if depthwise:
        return DepthwiseSeparableConv(
            in_channels, out_channels, kernel_size, stride=stride, norm=norm, act=act
        )
    return ConvNormAct(in_channels, out_channels, kernel_size, stride=stride, norm=norm, act=act)


class CSPNeXtBlock(nn.Module):
    """3x3 conv unit then a 5x5 depthwise-separable unit, plus the input when ``add_identity`` (same width)."""

    def __init__(
        self, channels: int, *, add_identity: bool, depthwise: bool = False, kernel_size: int = 5,
        norm: str = "BN", act: str = "SiLU",
    ) -> None:  # fmt: skip
        super().__init__()
        self.conv1 = conv_unit(channels, channels, 3, depthwise=depthwise, norm=norm, act=act)
        self.conv2 = DepthwiseSeparableConv(channels, channels, kernel_size, norm=norm, act=act)
        self.add_identity = add_identity

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(self.conv1(x))
        return out + x if self.add_identity else out


class ChannelAttention(nn.Module):
    """``x * hardsigmoid(fc(avgpool(x)))`` with a 1x1 conv ``fc`` (with bias); the pooling runs in float32."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.fc = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        pooled = x.float().mean(dim=(2, 3), keepdim=True).to(x.dtype)  # [B, C, 1, 1]
        return x * F.hardsigmoid(self.fc(pooled))


class CSPLayer(nn.Module):
    """Cross-stage partial layer: two 1x1 branches, CSPNeXt blocks on the main one, concat, 1x1 fuse.

    Args:
        in_channels, out_channels: the layer's input and output widths.
        num_blocks: :class:`CSPNeXtBlock` count on the main branch.
        expand_ratio: each branch has ``int(out_channels * expand_ratio)`` channels.
        add_identity: residual connections inside the blocks.
        channel_attention: :class:`ChannelAttention` on the concatenated branches (``attention.fc``).
        depthwise: depthwise-separable first convs in the blocks.

    ``forward``: ``[B, in_channels, H, W] -> [B, out_channels, H, W]``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        num_blocks: int = 1,
        expand_ratio: float = 0.5,
        add_identity: bool = True,
        channel_attention: bool = False,
        depthwise: bool = False,
        norm: str = "BN",
        act: str = "SiLU",
    ) -> None:
        super().__init__()
        mid = int(out_channels * expand_ratio)
        self.main_conv = ConvNormAct(in_channels, mid, 1, norm=norm, act=act)
        self.short_conv = ConvNormAct(in_channels, mid, 1, norm=norm, act=act)
        self.final_conv = ConvNormAct(2 * mid, out_channels, 1, norm=norm, act=act)
        self.blocks = nn.Sequential(*(
            CSPNeXtBlock(mid, add_identity=add_identity, depthwise=depthwise, norm=norm, act=act)
            for _ in range(num_blocks)
        ))  # fmt: skip
        self.attention = ChannelAttention(2 * mid) if channel_attention else None

    def forward(self, x: Tensor) -> Tensor:
        x = torch.cat([self.blocks(self.main_conv(x)), self.short_conv(x)], dim=1)
        if self.attention is not None:
            x = self.attention(x)
        return self.final_conv(x)


class SPPBottleneck(nn.Module):
    """Spatial pyramid pooling: 1x1 conv to half width, concat with stride-1 max-pools of each kernel, 1x1 conv.

    ``forward``: ``[B, in_channels, H, W] -> [B, out_channels, H, W]``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, *, kernel_sizes: Sequence[int] = (5, 9, 13),
        norm: str = "BN", act: str = "SiLU",
    ) -> None:  # fmt: skip
        super().__init__()
        mid = in_channels // 2
        self.kernel_sizes = tuple(int(k) for k in kernel_sizes)
        self.conv1 = ConvNormAct(in_channels, mid, 1, norm=norm, act=act)
        self.conv2 = ConvNormAct(mid * (len(self.kernel_sizes) + 1), out_channels, 1, norm=norm, act=act)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        pooled = [F.max_pool2d(x, k, stride=1, padding=k // 2) for k in self.kernel_sizes]
        return self.conv2(torch.cat([x, *pooled], dim=1))

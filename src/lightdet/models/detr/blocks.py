"""Convolution blocks of the real-time DETRs' hybrid encoders, and the MLP of their heads.

Names follow the original repositories (lyuwenyu/RT-DETR, Peterande/D-FINE): a conv unit is ``conv`` ->
``norm`` -> ``act``; RT-DETR fuses pyramid levels with :class:`CSPRepLayer` (RepVGG bottlenecks), D-FINE with
:class:`RepNCSPELAN4` and downsamples with :class:`SCDown`. Shapes are ``[B, C, H, W]`` throughout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightdet.models.folding import fold_pair, is_foldable_norm
from lightdet.models.layers import build_norm

ACTIVATIONS = ("relu", "silu", "gelu")


def build_activation(name: str | None) -> nn.Module:
    """``"relu"`` / ``"silu"`` / ``"gelu"`` -> the module; ``None`` -> identity. ReLU and SiLU work in place:
    every call site gives them a tensor of its own (a conv, norm, linear layer or sum has just made it)."""
    if name is None:
        return nn.Identity()
    layers = {"relu": nn.ReLU, "silu": nn.SiLU, "gelu": nn.GELU}
    if name not in layers:
        raise ValueError(f"activation must be one of {ACTIVATIONS} or None, got {name!r}")
    return layers[name](inplace=True) if name in ("relu", "silu") else layers[name]()


class ConvNormAct(nn.Module):
    """``Conv2d`` (no bias, 'same' padding) -> norm -> activation.

    Args:
        in_channels, out_channels, kernel_size, stride, groups: of the convolution.
        act: ``"relu"``, ``"silu"``, ``"gelu"`` or ``None``.
        norm: a :func:`~lightdet.models.layers.build_norm` name (``"BN"``, ``"FrozenBN"``, ...).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        *,
        groups: int = 1,
        act: str | None = None,
        norm: str = "BN",
    ) -> None:
        super().__init__()
        padding = (kernel_size - 1) // 2
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False)
        self.norm = build_norm(norm, out_channels)
        self.act = build_activation(act)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.conv(x)))


class RepVggBlock(nn.Module):
    """RepVGG block: ``act(bn(conv3x3(x)) + bn(conv1x1(x)))`` in its training-time form (two branches);
    :meth:`fold_branches` turns it into its inference form, one 3x3 conv with bias (``conv2`` is then ``None``)."""

    def __init__(self, in_channels: int, out_channels: int, act: str | None = "relu") -> None:
        super().__init__()
        self.conv1 = ConvNormAct(in_channels, out_channels, 3)
        self.conv2: ConvNormAct | None = ConvNormAct(in_channels, out_channels, 1)
        self.act = build_activation(act)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv1(x)
        if self.conv2 is not None:
            y = y + self.conv2(x)
        return self.act(y)

    @torch.no_grad()
    def fold_branches(self) -> int:
        """Folds each branch's norm into its conv and adds the 1x1 kernel to the centre of the 3x3 one (exact:
        the 1x1 conv is the 3x3 conv with that kernel zero-padded). Inference only. Returns the number of norms
        folded: 2, or 0 (nothing changed) unless both fold exactly (:func:`~lightdet.models.folding.is_foldable_norm`)."""
        if self.conv2 is None or not (is_foldable_norm(self.conv1.norm) and is_foldable_norm(self.conv2.norm)):
            return 0
        for unit in (self.conv1, self.conv2):
            fold_pair(unit.conv, unit.norm)
            unit.norm = nn.Identity()
        merged, one = self.conv1.conv, self.conv2.conv
        merged.weight.add_(F.pad(one.weight, (1, 1, 1, 1)))
        merged.bias.add_(one.bias)
        self.conv2 = None
        return 2


class CSPRepLayer(nn.Module):
    """Cross-stage-partial layer: ``conv3(bottlenecks(conv1(x)) + conv2(x))`` with RepVGG bottlenecks.

    Args:
        in_channels, out_channels: of the layer.
        num_blocks: RepVGG blocks in the bottleneck branch.
        expansion: hidden channels = ``int(out_channels * expansion)``; ``conv3`` projects back when they differ.
        act: activation of every unit.
    """

    def __init__(
        self, in_channels: int, out_channels: int, num_blocks: int = 3, expansion: float = 1.0, act: str = "silu"
    ) -> None:
        super().__init__()
        hidden = int(out_channels * expansion)
        self.conv1 = ConvNormAct(in_channels, hidden, 1, act=act)
        self.conv2 = ConvNormAct(in_channels, hidden, 1, act=act)
        self.bottlenecks = nn.Sequential(*[RepVggBlock(hidden, hidden, act=act) for _ in range(num_blocks)])
        self.conv3 = ConvNormAct(hidden, out_channels, 1, act=act) if hidden != out_channels else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.conv3(self.bottlenecks(self.conv1(x)) + self.conv2(x))


class RepNCSPELAN4(nn.Module):
    """D-FINE's fusion block (GELAN with CSP-RepVGG branches).

    ``cv1`` (``in_channels`` wide) doubles as a split into two halves; the second half runs through two
    ``CSP -> 3x3`` branches in series (``cv2``, ``cv3``); all four tensors are concatenated and projected by ``cv4``.

    Args:
        in_channels, out_channels: of the block.
        expansion: branch width = ``round(expansion * out_channels // 2)`` (D-FINE's ``expansion``).
        num_blocks: RepVGG blocks per CSP layer (``round(3 * depth_mult)``).
        act: activation of every unit.
    """

    def __init__(
        self, in_channels: int, out_channels: int, expansion: float = 1.0, num_blocks: int = 3, act: str = "silu"
    ) -> None:
        super().__init__()
        branch = round(expansion * out_channels // 2)
        self.split = in_channels // 2
        self.cv1 = ConvNormAct(in_channels, in_channels, 1, act=act)
        self.cv2 = nn.Sequential(
            CSPRepLayer(self.split, branch, num_blocks, act=act), ConvNormAct(branch, branch, 3, act=act)
        )
        self.cv3 = nn.Sequential(
            CSPRepLayer(branch, branch, num_blocks, act=act), ConvNormAct(branch, branch, 3, act=act)
        )
        self.cv4 = ConvNormAct(in_channels + 2 * branch, out_channels, 1, act=act)

    def forward(self, x: Tensor) -> Tensor:
        parts = list(self.cv1(x).split((self.split, self.split), 1))
        parts.append(self.cv2(parts[-1]))
        parts.append(self.cv3(parts[-1]))
        return self.cv4(torch.cat(parts, 1))  # [B, hidden + 2 * branch, H, W]


class SCDown(nn.Module):
    """D-FINE's downsampling: 1x1 conv, then a depth-wise ``kernel_size`` conv of ``stride`` (D-FINE: no ``act``)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 2, act: str | None = None
    ) -> None:
        super().__init__()
        self.cv1 = ConvNormAct(in_channels, out_channels, 1, act=act)
        self.cv2 = ConvNormAct(out_channels, out_channels, kernel_size, stride, groups=out_channels, act=act)

    def forward(self, x: Tensor) -> Tensor:
        return self.cv2(self.cv1(x))


class MLP(nn.Module):
    """``num_layers`` linear layers with an activation between them (the box and query-position heads).

    Shapes: ``[..., input_dim] -> [..., output_dim]``.
    """

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int, act: str = "relu") -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.act = build_activation(act)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers[:-1]:
            x = self.act(layer(x))
        return self.layers[-1](x)

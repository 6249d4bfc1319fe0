"""ResNet-vd ("PResNet", RT-DETR's backbone): a deep 3x3 stem and average-pool shortcut downsampling.

Names follow lyuwenyu/RT-DETR (``conv1.conv1_{1,2,3}``, ``res_layers.{i}.blocks.{j}.branch2{a,b,c}``,
``short`` / ``short.conv`` after ``short.pool``), so the original ``.pth`` backbones load without renaming.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightdet.models.detr.blocks import ConvNormAct, build_activation

# depth -> blocks per stage
PRESNET_DEPTHS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3),
}
_STAGE_WIDTHS = (64, 128, 256, 512)
_STRIDES = (4, 8, 16, 32)


def shortcut(in_channels: int, out_channels: int, stride: int, norm: str) -> nn.Module:
    """Projection shortcut; variant d downsamples by a 2x2 average pool before the 1x1 conv."""
    if stride == 1:
        return ConvNormAct(in_channels, out_channels, 1, norm=norm)
    short = nn.Sequential()
    short.add_module("pool", nn.AvgPool2d(2, 2, 0, ceil_mode=True))
    short.add_module("conv", ConvNormAct(in_channels, out_channels, 1, norm=norm))
    return short


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34); the first block of a stage has a projection shortcut (``short``)."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int, project: bool, act: str, norm: str) -> None:
        super().__init__()
        self.short = shortcut(in_channels, width, stride, norm) if project else None
        self.branch2a = ConvNormAct(in_channels, width, 3, stride, act=act, norm=norm)
        self.branch2b = ConvNormAct(width, width, 3, norm=norm)
        self.act = build_activation(act)

    def forward(self, x: Tensor) -> Tensor:
        out = self.branch2b(self.branch2a(x))
        out += x if self.short is None else self.short(x)  # out is the block's own tensor
        return self.act(out)


class BottleNeck(nn.Module):
    """1x1 -> 3x3 (stride here, variant d) -> 1x1 with 4x expansion (ResNet-50/101)."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int, project: bool, act: str, norm: str) -> None:
        super().__init__()
        out = width * self.expansion
        self.branch2a = ConvNormAct(in_channels, width, 1, act=act, norm=norm)
        self.branch2b = ConvNormAct(width, width, 3, stride, act=act, norm=norm)
        self.branch2c = ConvNormAct(width, out, 1, norm=norm)
        self.short = shortcut(in_channels, out, stride, norm) if project else None
        self.act = build_activation(act)

    def forward(self, x: Tensor) -> Tensor:
        out = self.branch2c(self.branch2b(self.branch2a(x)))
        out += x if self.short is None else self.short(x)  # out is the block's own tensor
        return self.act(out)


class Blocks(nn.Module):
    """One stage: ``blocks.{j}``, the first with the stride and the projection shortcut."""

    def __init__(self, block: type[BasicBlock | BottleNeck], in_channels: int, width: int, count: int, stride: int,
                 act: str, norm: str) -> None:
        super().__init__()
        out = width * block.expansion
        self.blocks = nn.ModuleList(
            block(in_channels if j == 0 else out, width, stride if j == 0 else 1, j == 0, act, norm)
            for j in range(count)
        )

    def forward(self, x: Tensor) -> Tensor:
        for b in self.blocks:
            x = b(x)
        return x


class PResNet(nn.Module):
    """ResNet-vd 18/34/50/101 returning the stages ``out_indices`` (0..3 = strides 4..32).

    Args:
        depth: 18, 34, 50 or 101.
        out_indices: returned stages; RT-DETR uses ``[1, 2, 3]`` (strides 8, 16, 32).
        act: activation (``"relu"``).
        freeze_at: -1 trains everything; k >= 0 freezes the stem and the first k stages.
        norm: ``"FrozenBN"`` (RT-DETR's default) or ``"BN"`` / ``"SyncBN"``.
        num_blocks: blocks per stage instead of the depth's (the block type still follows ``depth``).
        weights: a state-dict file with these names (e.g. RT-DETR's converted ImageNet ResNet-vd), or None.

    Attributes:
        out_channels, strides: of the returned maps.
    """

    def __init__(
        self,
        depth: int = 50,
        out_indices: Sequence[int] = (1, 2, 3),
        *,
        act: str = "relu",
        freeze_at: int = 0,
        norm: str = "FrozenBN",
        num_blocks: Sequence[int] | None = None,
        weights: str | None = None,
    ) -> None:
        super().__init__()
        if depth not in PRESNET_DEPTHS or not all(0 <= i <= 3 for i in out_indices):
            raise ValueError(f"PResNet: depth in {sorted(PRESNET_DEPTHS)}, out_indices in 0..3; got {depth}, {out_indices}")
        self.conv1 = nn.Sequential()
        for name, cin, cout, stride in (("conv1_1", 3, 32, 2), ("conv1_2", 32, 32, 1), ("conv1_3", 32, 64, 1)):
            self.conv1.add_module(name, ConvNormAct(cin, cout, 3, stride, act=act, norm=norm))
        block = BottleNeck if depth >= 50 else BasicBlock
        channels = [w * block.expansion for w in _STAGE_WIDTHS]
        ins = [64, *channels[:3]]
        self.res_layers = nn.ModuleList(
            Blocks(block, ins[i], _STAGE_WIDTHS[i], n, 1 if i == 0 else 2, act, norm)
            for i, n in enumerate(num_blocks or PRESNET_DEPTHS[depth])
        )
        self.out_indices = list(out_indices)
        self.out_channels = [channels[i] for i in out_indices]
        self.strides = [_STRIDES[i] for i in out_indices]
        if weights is not None:
            self.load_state_dict(torch.load(Path(weights), map_location="cpu", weights_only=True))
        self._freeze(freeze_at)

    def _freeze(self, freeze_at: int) -> None:
        if freeze_at < 0:
            return
        for module in [self.conv1, *self.res_layers[:freeze_at]]:
            module.requires_grad_(False)

    def forward(self, x: Tensor) -> list[Tensor]:
        """``[B, 3, H, W]`` -> the maps of ``out_indices``, ``[B, C_i, H / s_i, W / s_i]``."""
        x = F.max_pool2d(self.conv1(x), kernel_size=3, stride=2, padding=1)
        outs = []
        for i, stage in enumerate(self.res_layers):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return outs

"""HGNetv2 B0-B6 (PaddlePaddle's PP-HGNetV2, D-FINE's backbones).

Names follow Peterande/D-FINE (``stem.stem{1,2a,2b,3,4}``, ``stages.{i}.downsample``,
``stages.{i}.blocks.{j}.layers.{k}``, ``...aggregation.{0,1}``; conv units ``conv``, ``bn``, ``lab``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightdet.models.layers import build_norm

# per stage: in, mid, out channels, blocks, downsample, light block, kernel size, layers per block
StageSpec = tuple[int, int, int, int, bool, bool, int, int]
HGNETV2_ARCHS: dict[str, tuple[tuple[int, int, int], tuple[StageSpec, ...]]] = {
    "B0": ((3, 16, 16), ((16, 16, 64, 1, False, False, 3, 3), (64, 32, 256, 1, True, False, 3, 3),
                         (256, 64, 512, 2, True, True, 5, 3), (512, 128, 1024, 1, True, True, 5, 3))),
    "B1": ((3, 24, 32), ((32, 32, 64, 1, False, False, 3, 3), (64, 48, 256, 1, True, False, 3, 3),
                         (256, 96, 512, 2, True, True, 5, 3), (512, 192, 1024, 1, True, True, 5, 3))),
    "B2": ((3, 24, 32), ((32, 32, 96, 1, False, False, 3, 4), (96, 64, 384, 1, True, False, 3, 4),
                         (384, 128, 768, 3, True, True, 5, 4), (768, 256, 1536, 1, True, True, 5, 4))),
    "B3": ((3, 24, 32), ((32, 32, 128, 1, False, False, 3, 5), (128, 64, 512, 1, True, False, 3, 5),
                         (512, 128, 1024, 3, True, True, 5, 5), (1024, 256, 2048, 1, True, True, 5, 5))),
    "B4": ((3, 32, 48), ((48, 48, 128, 1, False, False, 3, 6), (128, 96, 512, 1, True, False, 3, 6),
                         (512, 192, 1024, 3, True, True, 5, 6), (1024, 384, 2048, 1, True, True, 5, 6))),
    "B5": ((3, 32, 64), ((64, 64, 128, 1, False, False, 3, 6), (128, 128, 512, 2, True, False, 3, 6),
                         (512, 256, 1024, 5, True, True, 5, 6), (1024, 512, 2048, 2, True, True, 5, 6))),
    "B6": ((3, 48, 96), ((96, 96, 192, 2, False, False, 3, 6), (192, 192, 512, 3, True, False, 3, 6),
                         (512, 384, 1024, 6, True, True, 5, 6), (1024, 768, 2048, 3, True, True, 5, 6))),
}
_STRIDES = (4, 8, 16, 32)


class LearnableAffineBlock(nn.Module):
    """``scale * x + bias`` with two learned scalars (``use_lab``)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        return self.scale * x + self.bias


class ConvBNAct(nn.Module):
    """Conv (no bias, 'same' padding for odd kernels) -> norm -> optional ReLU -> optional affine block."""

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int = 1, groups: int = 1, *,
                 act: bool = True, lab: bool = False, norm: str = "BN") -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False)
        self.bn = build_norm(norm, cout)
        self.act = nn.ReLU(inplace=True) if act else nn.Identity()  # its input is the norm's fresh output
        self.lab = LearnableAffineBlock() if act and lab else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.lab(self.act(self.bn(self.conv(x))))


class StemBlock(nn.Module):
    """Stride-4 stem: 3x3/2, a 2x2 conv branch beside a 2x2 max pool, 3x3/2 on their concatenation, 1x1."""

    def __init__(self, cin: int, mid: int, cout: int, lab: bool, norm: str) -> None:
        super().__init__()
        self.stem1 = ConvBNAct(cin, mid, 3, 2, lab=lab, norm=norm)
        self.stem2a = ConvBNAct(mid, mid // 2, 2, lab=lab, norm=norm)
        self.stem2b = ConvBNAct(mid // 2, mid, 2, lab=lab, norm=norm)
        self.stem3 = ConvBNAct(mid * 2, mid, 3, 2, lab=lab, norm=norm)
        self.stem4 = ConvBNAct(mid, cout, 1, lab=lab, norm=norm)
        self.pool = nn.MaxPool2d(kernel_size=2, stride=1, ceil_mode=True)

    def forward(self, x: Tensor) -> Tensor:
        x = F.pad(self.stem1(x), (0, 1, 0, 1))
        branch = self.stem2b(F.pad(self.stem2a(x), (0, 1, 0, 1)))
        return self.stem4(self.stem3(torch.cat((self.pool(x), branch), 1)))


class HGBlock(nn.Module):
    """``layer_num`` convs in series (light: 1x1 then depth-wise), all outputs concatenated with the input and
    aggregated by 1x1 convs to ``out // 2`` then ``out``; residual except in a stage's first block."""

    def __init__(self, cin: int, mid: int, cout: int, layer_num: int, kernel_size: int, residual: bool, light: bool,
                 lab: bool, norm: str) -> None:
        super().__init__()
        self.residual = residual
        self.layers = nn.ModuleList()
        for i in range(layer_num):
            c = cin if i == 0 else mid
            if light:
                unit = nn.Sequential()
                unit.add_module("conv1", ConvBNAct(c, mid, 1, act=False, lab=lab, norm=norm))
                unit.add_module("conv2", ConvBNAct(mid, mid, kernel_size, groups=mid, lab=lab, norm=norm))
            else:
                unit = ConvBNAct(c, mid, kernel_size, lab=lab, norm=norm)
            self.layers.append(unit)
        total = cin + layer_num * mid
        self.aggregation = nn.Sequential(
            ConvBNAct(total, cout // 2, 1, lab=lab, norm=norm), ConvBNAct(cout // 2, cout, 1, lab=lab, norm=norm)
        )

    def forward(self, x: Tensor) -> Tensor:
        outs = [x]
        for layer in self.layers:
            outs.append(layer(outs[-1]))
        y = self.aggregation(torch.cat(outs, 1))
        return y + x if self.residual else y


class HGStage(nn.Module):
    """Optional depth-wise 3x3/2 downsampling, then ``blocks``."""

    def __init__(self, spec: StageSpec, lab: bool, norm: str) -> None:
        super().__init__()
        cin, mid, cout, num_blocks, downsample, light, k, layer_num = spec
        self.downsample = (
            ConvBNAct(cin, cin, 3, 2, groups=cin, act=False, lab=lab, norm=norm) if downsample else nn.Identity()
        )
        self.blocks = nn.Sequential(*[
            HGBlock(cin if j == 0 else cout, mid, cout, layer_num, k, j > 0, light, lab, norm)
            for j in range(num_blocks)
        ])

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(self.downsample(x))


class HGNetv2(nn.Module):
    """HGNetv2 ``name`` (B0-B6) returning the stages ``out_indices`` (0..3 = strides 4..32).

    Args:
        name: ``"B0"`` ... ``"B6"`` (D-FINE N/S: B0, M: B2, L: B4, X: B5).
        out_indices: returned stages (``[1, 2, 3]``; D-FINE-N ``[2, 3]``).
        use_lab: learnable affine blocks after activations (D-FINE N/S/M).
        freeze_stem: no gradient for the stem (D-FINE L/X).
        freeze_at: additionally freeze stages ``0..freeze_at`` (-1: none).
        norm: ``"FrozenBN"`` (L/X) or ``"BN"`` (N/S/M train their norms).
        weights: a state-dict file with these names (e.g. D-FINE's ImageNet ``PPHGNetV2_B*_stage1.pth``).

    Attributes:
        out_channels, strides: of the returned maps.
    """

    def __init__(
        self,
        name: str = "B4",
        out_indices: Sequence[int] = (1, 2, 3),
        *,
        use_lab: bool = False,
        freeze_stem: bool = True,
        freeze_at: int = -1,
        norm: str = "FrozenBN",
        weights: str | None = None,
    ) -> None:
        super().__init__()
        if name not in HGNETV2_ARCHS or not all(0 <= i <= 3 for i in out_indices):
            raise ValueError(f"HGNetv2: name in {sorted(HGNETV2_ARCHS)}, out_indices in 0..3; got {name!r}, {out_indices}")
        stem, stages = HGNETV2_ARCHS[name]
        self.stem = StemBlock(*stem, lab=use_lab, norm=norm)
        self.stages = nn.ModuleList(HGStage(s, use_lab, norm) for s in stages)
        self.out_indices = list(out_indices)
        self.out_channels = [stages[i][2] for i in out_indices]
        self.strides = [_STRIDES[i] for i in out_indices]
        if weights is not None:
            self.load_state_dict(torch.load(Path(weights), map_location="cpu", weights_only=True))
        if freeze_stem:
            self.stem.requires_grad_(False)
        for stage in self.stages[: freeze_at + 1]:
            stage.requires_grad_(False)

    def forward(self, x: Tensor) -> list[Tensor]:
        """``[B, 3, H, W]`` -> the maps of ``out_indices``."""
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return outs

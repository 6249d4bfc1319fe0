"""CSPNeXt (RTMDet's backbone, Lyu et al. 2022) with MMDetection's module names.

A three-conv stem (stride 2) and four stages, each a stride-2 conv unit, an SPP block in the last stage,
and a :class:`~lightdet.models.backbones.csp_layers.CSPLayer` with channel attention. Widths and depths scale
with ``widen_factor`` / ``deepen_factor``: RTMDet tiny 0.375 / 0.167, s 0.5 / 0.33, m 0.75 / 0.67,
l 1 / 1, x 1.25 / 1.33.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from lightdet.models.backbones.csp_layers import ConvNormAct, CSPLayer, SPPBottleneck, conv_unit
from lightdet.models.layers import NORM_NAMES, freeze_bn_statistics

# per stage (P5 arch): input width, output width, CSP blocks, residual blocks, SPP
_P5 = (
    (64, 128, 3, True, False),
    (128, 256, 6, True, False),
    (256, 512, 6, True, False),
    (512, 1024, 3, False, True),
)


class CSPNeXt(nn.Module):
    """CSPNeXt-P5: ``stem`` (stride 2) then ``stage1``..``stage4`` at strides 4, 8, 16, 32.

    Args:
        deepen_factor: CSP block counts are ``max(round(n * deepen_factor), 1)``.
        widen_factor: widths are ``int(w * widen_factor)``.
        out_indices: outputs to return, 0 the stem, 1..4 the stages (RTMDet: 2, 3, 4).
        frozen_stages: -1 none, k: the stem and stages 1..k get no gradient and stay in eval mode.
        expand_ratio: CSP branch width ratio.
        channel_attention: channel attention in every stage's CSP layer.
        depthwise: depthwise-separable stride-2 convs and block convs (not used by RTMDet).
        norm, act: norm name (``"BN"``, ``"SyncBN"`` ...) and activation (``"SiLU"``).
        norm_eval: keep BN layers in eval mode while training.

    Attributes:
        out_channels, strides: of each returned map (what necks read).

    ``forward``: ``[B, 3, H, W]`` -> one ``[B, out_channels[i], H / strides[i], W / strides[i]]`` per index.
    """

    def __init__(
        self,
        *,
        deepen_factor: float = 1.0,
        widen_factor: float = 1.0,
        out_indices: Sequence[int] = (2, 3, 4),
        frozen_stages: int = -1,
        expand_ratio: float = 0.5,
        channel_attention: bool = True,
        depthwise: bool = False,
        norm: str = "BN",
        act: str = "SiLU",
        norm_eval: bool = False,
    ) -> None:
        super().__init__()
        _check_args(out_indices, frozen_stages, norm)
        stem = int(_P5[0][0] * widen_factor)
        self.stem = nn.Sequential(
            ConvNormAct(3, stem // 2, 3, stride=2, norm=norm, act=act),
            ConvNormAct(stem // 2, stem // 2, 3, norm=norm, act=act),
            ConvNormAct(stem // 2, stem, 3, norm=norm, act=act),
        )
        widths = [stem]
        for i, (cin, cout, blocks, identity, spp) in enumerate(_P5):
            cin, cout = int(cin * widen_factor), int(cout * widen_factor)
            layers: list[nn.Module] = [
                conv_unit(cin, cout, 3, stride=2, depthwise=depthwise, norm=norm, act=act)
            ]
            if spp:
                layers.append(SPPBottleneck(cout, cout, norm=norm, act=act))
            layers.append(CSPLayer(
                cout, cout, num_blocks=max(round(blocks * deepen_factor), 1), expand_ratio=expand_ratio,
                add_identity=identity, channel_attention=channel_attention, depthwise=depthwise, norm=norm, act=act,
            ))  # fmt: skip
            self.add_module(f"stage{i + 1}", nn.Sequential(*layers))
            widths.append(cout)
        self.out_indices = tuple(out_indices)
        self.out_channels = [widths[i] for i in self.out_indices]
        self.strides = [2 ** (i + 1) for i in self.out_indices]
        self.frozen_stages, self.norm_eval = frozen_stages, norm_eval
        for module in self._frozen_modules():
            module.requires_grad_(False)
        self.train()

    def _layers(self) -> list[nn.Module]:
        return [self.stem, self.stage1, self.stage2, self.stage3, self.stage4]

    def _frozen_modules(self) -> list[nn.Module]:
        return self._layers()[: self.frozen_stages + 1]

    def train(self, mode: bool = True) -> CSPNeXt:
        """Sets the mode, then keeps frozen stages (and, with ``norm_eval``, every BN) in eval mode."""
        super().train(mode)
        for module in self._frozen_modules():
            module.eval()
        if mode and self.norm_eval:
            freeze_bn_statistics(self)
        return self

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = []
        for i, layer in enumerate(self._layers()[: max(self.out_indices) + 1]):
            x = layer(x)
            if i in self.out_indices:
                outs.append(x)
        return outs


def _check_args(out_indices: Sequence[int], frozen_stages: int, norm: str) -> None:
    if (
        not out_indices
        or not all(0 <= i <= 4 for i in out_indices)
        or list(out_indices) != sorted(out_indices)
    ):
        raise ValueError(f"CSPNeXt out_indices must be increasing indices in 0..4, got {list(out_indices)}")
    if not -1 <= frozen_stages <= 4:
        raise ValueError(f"CSPNeXt frozen_stages must be in -1..4, got {frozen_stages}")
    if norm not in NORM_NAMES:
        raise ValueError(f"CSPNeXt norm must be one of {NORM_NAMES}, got {norm!r}")

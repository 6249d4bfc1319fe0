"""MobileNetV3 (Howard et al. 2019) from torchvision as a detection backbone: its layers cut into four stages."""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torchvision
from torch import Tensor, nn

from lightdet.models.layers import NORM_NAMES, build_norm

_BUILDERS = {"large": torchvision.models.mobilenet_v3_large, "small": torchvision.models.mobilenet_v3_small}
_BN_TYPES = (nn.BatchNorm2d, nn.SyncBatchNorm)


class MobileNetV3(nn.Module):
    """torchvision's MobileNetV3 ``features`` in four stages that end at strides 4, 8, 16 and 32.

    A stage ends before the next stride-2 block; the last one keeps the final 1x1 conv (960 channels for
    ``"large"``, 576 for ``"small"``), as torchvision's detection backbones do. Stage 0 starts with the stem
    conv (``stages.0.0``), so ``frozen_stages`` means what it means for :class:`~lightdet.models.ResNet`.

    Args:
        arch: ``"large"`` or ``"small"``.
        out_indices: stages to return, 0..3 (strides 4, 8, 16, 32).
        frozen_stages: parameters without gradient and norm layers kept in eval mode: -1 none, 0 the stem
            conv, k the stem and stages 0..k-1.
        norm: ``"BN"``, ``"SyncBN"``, ``"FrozenBN"`` or ``"GN"`` (8 groups: the narrowest layers have 16
            channels).
        norm_eval: keep (Sync)BN layers in eval mode (frozen running statistics) while training.
        weights: ``None`` (random init) or a torchvision weights name such as
            ``"MobileNet_V3_Large_Weights.IMAGENET1K_V1"`` (downloaded on first use; a BN-type ``norm``).

    Attributes:
        out_channels, strides: channels and stride of each returned map (what necks read).

    ``forward``: ``[B, 3, H, W]`` -> ``[B, out_channels[i], H / strides[i], W / strides[i]]`` per index.
    """

    def __init__(
        self,
        arch: str = "large",
        *,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        frozen_stages: int = 1,
        norm: str = "BN",
        norm_eval: bool = True,
        weights: str | None = None,
    ) -> None:
        super().__init__()
        _check_args(arch, out_indices, frozen_stages, norm)
        norm_layer = functools.partial(build_norm, norm, num_groups=8)
        tv_weights = _torchvision_weights(weights) if weights is not None else None
        features = _BUILDERS[arch](weights=tv_weights, norm_layer=norm_layer).features
        # torchvision marks its stride-2 blocks with _is_cn; the first one reaches stride 4 inside stage 0
        cuts = [i for i, block in enumerate(features) if getattr(block, "_is_cn", False)][1:]
        bounds = zip([0, *cuts], [*cuts, len(features)])
        self.stages = nn.ModuleList(features[start:stop] for start, stop in bounds)
        self.out_indices = tuple(out_indices)
        self.out_channels = [self.stages[i][-1].out_channels for i in self.out_indices]
        self.strides = [2 ** (i + 2) for i in self.out_indices]
        self.frozen_stages, self.norm_eval = frozen_stages, norm_eval
        for module in self._frozen_modules():
            module.requires_grad_(False)
        self.train()

    def _frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        return [self.stages[0][0], *self.stages[: self.frozen_stages]]

    def train(self, mode: bool = True) -> MobileNetV3:
        """Sets the mode, then keeps frozen stages (and, with ``norm_eval``, every BN) in eval mode."""
        super().train(mode)
        for module in self._frozen_modules():
            module.eval()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BN_TYPES):
                    m.eval()
        return self

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = []
        for i, stage in enumerate(self.stages[: max(self.out_indices) + 1]):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return outs


def _check_args(arch: str, out_indices: Sequence[int], frozen_stages: int, norm: str) -> None:
    if arch not in _BUILDERS:
        raise ValueError(f"MobileNetV3 arch must be one of {sorted(_BUILDERS)}, got {arch!r}")
    if not out_indices or not all(0 <= i <= 3 for i in out_indices):
        raise ValueError(f"MobileNetV3 out_indices must be in 0..3, got {list(out_indices)}")
    if not -1 <= frozen_stages <= 4:
        raise ValueError(f"MobileNetV3 frozen_stages must be in -1..4, got {frozen_stages}")
    if norm not in NORM_NAMES:
        raise ValueError(f"MobileNetV3 norm must be one of {NORM_NAMES}, got {norm!r}")


def _torchvision_weights(name: str) -> torchvision.models.WeightsEnum:
    try:
        return torchvision.models.get_weight(name)
    except (KeyError, ValueError) as err:
        raise ValueError(
            f"MobileNetV3 weights {name!r} is not a torchvision weights name such as "
            f"'MobileNet_V3_Large_Weights.IMAGENET1K_V1' ({err})"
        ) from None

"""torchvision classification networks with a ``features`` sequence as detection backbones, by name:
MobileNetV2/V3, EfficientNet (B0-B7, V2) and ConvNeXt. Their layers are cut into four stages ending at
strides 4, 8, 16 and 32."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn

from lightdet.models.layers import NORM_NAMES, build_norm, freeze_bn_statistics

# families whose builders take a BatchNorm ``norm_layer`` (ConvNeXt's is its LayerNorm)
_BN_FAMILIES = ("mobilenet_", "efficientnet_")
FAMILIES = ("mobilenet_v2", "mobilenet_v3_", "efficientnet_", "convnext_")


class TorchvisionBackbone(nn.Module):
    """A torchvision model's ``features`` in four stages; each stage ends before the next stride-2 layer.

    Stage 0 holds everything up to stride 4 and starts with the stem (``stages.0.0``); the last stage keeps
    the final 1x1 conv of MobileNet/EfficientNet (as torchvision's detection backbones do).

    Args:
        name: a torchvision builder, e.g. ``"mobilenet_v3_large"``, ``"efficientnet_b0"``,
            ``"convnext_tiny"`` (see :data:`FAMILIES`).
        out_indices: stages to return, 0..3 (strides 4, 8, 16, 32).
        frozen_stages: parameters without gradient and norm layers kept in eval mode: -1 none, 0 the stem,
            k the stem and stages 0..k-1.
        norm: None keeps the model's own norm layers; ``"BN"``, ``"SyncBN"``, ``"FrozenBN"`` or ``"GN"``
            (8 groups) replaces MobileNet/EfficientNet's BatchNorm layers.
        norm_eval: keep (Sync)BN layers in eval mode (frozen running statistics) while training.
        weights: None (random init), a torchvision weights name such as ``"ConvNeXt_Tiny_Weights.IMAGENET1K_V1"``
            (downloaded by torchvision on first use), or the path of a local state dict of the classifier
            (read with ``weights_only=True``).

    Attributes:
        out_channels, strides: of each returned map (what necks read).

    ``forward``: ``[B, 3, H, W]`` -> ``[B, out_channels[i], H / strides[i], W / strides[i]]`` per index.
    """

    def __init__(
        self,
        name: str,
        *,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        frozen_stages: int = 1,
        norm: str | None = None,
        norm_eval: bool = True,
        weights: str | None = None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        _check_args(owner, name, out_indices, frozen_stages, norm)
        features = _build_features(owner, name, norm, weights)
        self.stages = nn.ModuleList(_split_stages(owner, name, features))
        self.out_indices = tuple(out_indices)
        self.out_channels = [_last_conv(self.stages[i]).out_channels for i in self.out_indices]
        self.strides = [2 ** (i + 2) for i in self.out_indices]
        self.frozen_stages, self.norm_eval = frozen_stages, norm_eval
        for module in self._frozen_modules():
            module.requires_grad_(False)
        self.train()

    def _frozen_modules(self) -> list[nn.Module]:
        if self.frozen_stages < 0:
            return []
        return [self.stages[0][0], *self.stages[: self.frozen_stages]]

    def train(self, mode: bool = True) -> TorchvisionBackbone:
        """Sets the mode, then keeps frozen stages (and, with ``norm_eval``, every BN) in eval mode."""
        super().train(mode)
        for module in self._frozen_modules():
            module.eval()
        if mode and self.norm_eval:
            freeze_bn_statistics(self)
        return self

    def forward(self, x: Tensor) -> list[Tensor]:
        outs = []
        for i, stage in enumerate(self.stages[: max(self.out_indices) + 1]):
            x = stage(x)
            if i in self.out_indices:
                outs.append(x)
        return outs


def _check_args(
    owner: str, name: str, out_indices: Sequence[int], frozen_stages: int, norm: str | None
) -> None:
    if not name.startswith(FAMILIES):
        raise ValueError(f"{owner} name must be a torchvision model of the families {FAMILIES}, got {name!r}")
    if not out_indices or not all(0 <= i <= 3 for i in out_indices):
        raise ValueError(f"{owner} out_indices must be in 0..3, got {list(out_indices)}")
    if not -1 <= frozen_stages <= 4:
        raise ValueError(f"{owner} frozen_stages must be in -1..4, got {frozen_stages}")
    if norm is not None and norm not in NORM_NAMES:
        raise ValueError(f"{owner} norm must be None or one of {NORM_NAMES}, got {norm!r}")
    if norm is not None and not name.startswith(_BN_FAMILIES):
        raise ValueError(
            f"{owner} {name}: norm replaces BatchNorm layers; {name} has its own (use norm=None)"
        )


def _build_features(owner: str, name: str, norm: str | None, weights: str | None) -> nn.Sequential:
    """The classifier's ``features``, with ``weights`` loaded (a torchvision weights name or a local file)."""
    kwargs = {} if norm is None else {"norm_layer": functools.partial(build_norm, norm, num_groups=8)}
    path = Path(weights) if weights is not None else None
    tv_weights = _torchvision_weights(owner, weights) if weights is not None and not path.is_file() else None
    model = torchvision.models.get_model(name, weights=tv_weights, **kwargs)
    if path is not None and path.is_file():
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
    return model.features


def _layer_stride(layer: nn.Module) -> int:
    """The stride of a layer: its largest conv stride (these families never chain two strided convs)."""
    return max((m.stride[0] for m in layer.modules() if isinstance(m, nn.Conv2d)), default=1)


def _split_stages(owner: str, name: str, features: nn.Sequential) -> list[nn.Sequential]:
    """Cuts ``features`` into the layers at strides (up to) 4, 8, 16 and 32."""
    stage_of, stride = [], 1
    for layer in features:
        stride *= _layer_stride(layer)
        stage_of.append(max(int(math.log2(stride)) - 2, 0))
    if stride != 32:
        raise ValueError(f"{owner} {name}: its features end at stride {stride}, not 32")
    # slices keep the layers' indices in ``features`` (stages.1.4...), the key names of earlier checkpoints
    starts = [stage_of.index(k) if k in stage_of else None for k in range(4)]
    if None in starts:
        raise ValueError(f"{owner} {name}: no layer ends at one of the strides 4, 8, 16, 32")
    return [features[start:stop] for start, stop in zip(starts, [*starts[1:], len(features)])]


def _last_conv(stage: nn.Module) -> nn.Conv2d:
    return [m for m in stage.modules() if isinstance(m, nn.Conv2d)][-1]


def _torchvision_weights(owner: str, name: str) -> torchvision.models.WeightsEnum:
    try:
        return torchvision.models.get_weight(name)
    except (KeyError, ValueError) as err:
        raise ValueError(
            f"{owner} weights {name!r} is neither an existing file nor a torchvision weights name such as "
            f"'MobileNet_V3_Large_Weights.IMAGENET1K_V1' ({err})"
        ) from None

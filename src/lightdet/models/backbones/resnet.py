"""ResNet / ResNeXt backbones built from torchvision's ResNet modules, with MMDetection's options.

Module names are torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layerN.0.downsample.{0,1}``),
which is also what MMDetection checkpoints use under ``backbone.``, so both load without renaming.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models import resnet as tv_resnet

from lightdet.models.layers import NORM_NAMES, build_norm, freeze_bn_statistics

# depth -> (block type, blocks per stage)
_ARCH: dict[int, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    18: (tv_resnet.BasicBlock, (2, 2, 2, 2)),
    34: (tv_resnet.BasicBlock, (3, 4, 6, 3)),
    50: (tv_resnet.Bottleneck, (3, 4, 6, 3)),
    101: (tv_resnet.Bottleneck, (3, 4, 23, 3)),
    152: (tv_resnet.Bottleneck, (3, 8, 36, 3)),
}


def _check_depth(depth: int) -> None:
    if depth not in _ARCH:
        raise ValueError(f"ResNet depth must be one of {sorted(_ARCH)}, got {depth}")


def resnet_out_channels(depth: int, out_indices: Sequence[int]) -> list[int]:
    """Channels of the stages a :class:`ResNet` of ``depth`` returns for ``out_indices`` (0 = ``layer1``)."""
    _check_depth(depth)
    expansion = 4 if _ARCH[depth][0] is tv_resnet.Bottleneck else 1
    for i in out_indices:
        if not 0 <= i <= 3:
            raise ValueError(f"ResNet out_indices must be in 0..3, got {list(out_indices)}")
    return [64 * 2**i * expansion for i in out_indices]


class ResNet(nn.Module):
    """ResNet-{18,34,50,101,152} (ResNeXt with ``groups > 1``) returning the feature maps of chosen stages.

    Args:
        depth: 18, 34, 50, 101 or 152.
        out_indices: stages to return, 0..3 for ``layer1``..``layer4`` (strides 4, 8, 16, 32).
        frozen_stages: stages whose parameters get no gradient and whose norm layers stay in eval mode:
            -1 none, 0 the stem (``conv1``/``bn1``), k the stem and ``layer1``..``layerk``.
        norm: ``"BN"``, ``"SyncBN"``, ``"FrozenBN"`` or ``"GN"`` (32 groups).
        norm_eval: keep (Sync)BN layers in eval mode (frozen running statistics) while training.
        style: ``"pytorch"`` puts a bottleneck's stride on its 3x3 conv, ``"caffe"`` on its first 1x1 conv
            (for weights converted from Caffe/detectron; bottleneck depths only).
        groups, width_per_group: ResNeXt cardinality and per-group width (``32, 4`` for ResNeXt 32x4d).
        weights: ``None`` (random init), a torchvision weights enum name such as
            ``"ResNet50_Weights.IMAGENET1K_V1"`` (downloaded by torchvision if not cached), or the path of a
            local state dict with torchvision key names (optionally prefixed ``backbone.``, or under
            ``state_dict``).

    Attributes:
        out_channels, strides: channels and stride of each returned map (what necks read, see
            :func:`lightdet.config.register_resolvers`).

    ``forward``: ``[B, 3, H, W] -> list of [B, C_i, H / s_i, W / s_i]`` for each index in ``out_indices``.
    """

    def __init__(
        self,
        depth: int,
        *,
        out_indices: Sequence[int] = (0, 1, 2, 3),
        frozen_stages: int = 1,
        norm: str = "BN",
        norm_eval: bool = True,
        style: str = "pytorch",
        groups: int = 1,
        width_per_group: int = 64,
        weights: str | None = None,
    ) -> None:
        super().__init__()
        self.out_channels = resnet_out_channels(depth, out_indices)
        self.strides = [2 ** (i + 2) for i in out_indices]
        block, layers = _ARCH[depth]
        self._check_args(depth, block, norm, style, frozen_stages, groups, width_per_group)
        net = tv_resnet.ResNet(
            block, list(layers), groups=groups, width_per_group=width_per_group,
            norm_layer=functools.partial(build_norm, norm),
        )
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        if style == "caffe":
            self._move_strides_to_first_conv()
        self.out_indices = tuple(out_indices)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        if weights is not None:
            self.load_weights(weights)
        self._freeze_stages()

    @staticmethod
    def _check_args(
        depth: int, block: type, norm: str, style: str, frozen_stages: int, groups: int, width_per_group: int
    ) -> None:
        if norm not in NORM_NAMES:
            raise ValueError(f"ResNet norm must be one of {NORM_NAMES}, got {norm!r}")
        if style not in ("pytorch", "caffe"):
            raise ValueError(f"ResNet style must be 'pytorch' or 'caffe', got {style!r}")
        if style == "caffe" and block is not tv_resnet.Bottleneck:
            raise ValueError(f"ResNet style='caffe' moves a bottleneck's stride; ResNet-{depth} has none")
        if not -1 <= frozen_stages <= 4:
            raise ValueError(f"ResNet frozen_stages must be in -1..4, got {frozen_stages}")
        if (groups != 1 or width_per_group != 64) and block is not tv_resnet.Bottleneck:
            raise ValueError(f"ResNeXt (groups/width_per_group) needs a bottleneck depth, got ResNet-{depth}")

    def _move_strides_to_first_conv(self) -> None:
        for layer in (self.layer2, self.layer3, self.layer4):
            first = layer[0]
            first.conv1.stride, first.conv2.stride = first.conv2.stride, first.conv1.stride

    def _stages(self) -> list[list[nn.Module]]:
        return [[self.conv1, self.bn1], [self.layer1], [self.layer2], [self.layer3], [self.layer4]]

    def _freeze_stages(self) -> None:
        for stage in self._stages()[: self.frozen_stages + 1]:
            for module in stage:
                module.eval()
                for p in module.parameters():
                    p.requires_grad_(False)

    def train(self, mode: bool = True) -> ResNet:
        """Sets the mode, then keeps frozen stages (and, with ``norm_eval``, every BN) in eval mode."""
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            freeze_bn_statistics(self)
        return self

    def load_weights(self, weights: str) -> None:
        """Loads a torchvision weights enum (e.g. ``"ResNet50_Weights.IMAGENET1K_V1"``) or a local state dict.

        The classifier (``fc.*``) is skipped; any other missing or unexpected key raises ``ValueError``.
        """
        path = Path(weights)
        if path.is_file():
            state = _read_state_dict(path)
        elif "_Weights." in weights:
            state = _torchvision_weights(weights).get_state_dict(progress=True)
        else:
            raise ValueError(
                f"ResNet weights {weights!r} is neither an existing file nor a torchvision weights name "
                f"like 'ResNet50_Weights.IMAGENET1K_V1'"
            )
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        result = self.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ValueError(
                f"ResNet weights {weights!r} do not fit this backbone: "
                f"missing keys {result.missing_keys[:8]}, unexpected keys {result.unexpected_keys[:8]}"
            )

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs = []
        for i, layer in enumerate((self.layer1, self.layer2, self.layer3, self.layer4)):
            x = layer(x)
            if i in self.out_indices:
                outs.append(x)
            if i == max(self.out_indices):
                break
        return outs


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    """Reads a state dict saved with ``torch.save``; accepts a bare dict, ``{"state_dict": ...}`` or a
    ``backbone.``-prefixed (lightdet / MMDetection detector) dict, from which only backbone keys are taken."""
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"ResNet weights file {str(path)!r} does not hold a state dict of tensors")
    if any(k.startswith("backbone.") for k in obj):
        return {k[len("backbone."):]: v for k, v in obj.items() if k.startswith("backbone.")}
    return obj


def _torchvision_weights(name: str) -> torchvision.models.WeightsEnum:
    """The torchvision weights enum member called ``name`` (nothing is downloaded yet)."""
    try:
        return torchvision.models.get_weight(name)
    except (KeyError, ValueError) as err:
        raise ValueError(
            f"ResNet weights {name!r} is not a torchvision weights name such as "
            f"'ResNet50_Weights.IMAGENET1K_V1' ({err})"
        ) from None

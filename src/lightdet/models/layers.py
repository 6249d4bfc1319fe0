"""Building blocks shared by backbones, necks and heads: norm layers by name and a conv-norm-act unit.

Normalisation is named by a short string, as in the configs: ``"BN"``, ``"SyncBN"``, ``"FrozenBN"``
(torchvision's :class:`~torchvision.ops.FrozenBatchNorm2d`: statistics and affine terms are buffers) or
``"GN"`` (32 groups).
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.ops import FrozenBatchNorm2d

NORM_NAMES = ("BN", "SyncBN", "FrozenBN", "GN")


def build_norm(norm: str, num_features: int, *, num_groups: int = 32) -> nn.Module:
    """Returns a 2-D normalisation layer over ``num_features`` channels.

    Raises:
        ValueError: for a name outside :data:`NORM_NAMES` or a GN channel count not divisible by the groups.
    """
    if norm == "BN":
        return nn.BatchNorm2d(num_features)
    if norm == "SyncBN":
        return nn.SyncBatchNorm(num_features)
    if norm == "FrozenBN":
        return FrozenBatchNorm2d(num_features)
    if norm == "GN":
        if num_features % num_groups:
            raise ValueError(f"norm='GN': {num_features} channels are not divisible into {num_groups} groups")
        return nn.GroupNorm(num_groups, num_features)
    raise ValueError(f"norm must be one of {NORM_NAMES}, got {norm!r}")


def norm_attribute(norm: str) -> str:
    """The attribute name MMDetection's ConvModule gives a norm layer (``bn``/``gn``), for checkpoint keys."""
    return "gn" if norm == "GN" else "bn"


class ConvModule(nn.Module):
    """``Conv2d`` -> optional norm -> optional ReLU, with MMDetection's names (``conv``, ``bn``/``gn``).

    The convolution has a bias only when there is no norm layer, unless ``bias`` says otherwise
    (torchvision's FCOS towers have one before their GroupNorm).
    Shapes: ``[B, C_in, H, W] -> [B, C_out, H', W']``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int = 0,
        norm: str | None = None,
        relu: bool = False,
        bias: bool | None = None,
    ) -> None:
        super().__init__()
        bias = norm is None if bias is None else bias
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=bias)
        self.norm_name = norm_attribute(norm) if norm is not None else None
        if norm is not None:
            self.add_module(self.norm_name, build_norm(norm, out_channels))
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.norm_name is not None:
            x = getattr(self, self.norm_name)(x)
        return nn.functional.relu(x, inplace=True) if self.relu else x  # x: the conv or norm just made it


#: BatchNorm layers whose running statistics ``norm_eval`` freezes.
BN_TYPES = (nn.BatchNorm2d, nn.SyncBatchNorm)


def freeze_bn_statistics(module: nn.Module) -> None:
    """Puts every BatchNorm of ``module`` in eval mode (a backbone's ``norm_eval``), after ``train()``."""
    for m in module.modules():
        if isinstance(m, BN_TYPES):
            m.eval()

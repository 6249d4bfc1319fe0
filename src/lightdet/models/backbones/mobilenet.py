"""MobileNetV3 (Howard et al. 2019) from torchvision as a detection backbone: its layers cut into four stages."""

from __future__ import annotations

from collections.abc import Sequence

from lightdet.models.backbones.torchvision_backbone import TorchvisionBackbone

ARCHS = ("large", "small")


class MobileNetV3(TorchvisionBackbone):
    """torchvision's MobileNetV3 ``features`` in four stages that end at strides 4, 8, 16 and 32.

    :class:`TorchvisionBackbone` of ``mobilenet_v3_{arch}`` with BatchNorm from ``norm`` by default. The last
    stage keeps the final 1x1 conv (960 channels for ``"large"``, 576 for ``"small"``), as torchvision's
    detection backbones do. Stage 0 starts with the stem conv (``stages.0.0``), so ``frozen_stages`` means
    what it means for :class:`~lightdet.models.ResNet`.

    Args:
        arch: ``"large"`` or ``"small"``.
        out_indices, frozen_stages, norm_eval: as :class:`TorchvisionBackbone`.
        norm: ``"BN"``, ``"SyncBN"``, ``"FrozenBN"`` or ``"GN"`` (8 groups: the narrowest layers have 16
            channels).
        weights: ``None`` (random init), a torchvision weights name such as
            ``"MobileNet_V3_Large_Weights.IMAGENET1K_V1"`` (downloaded on first use; a BN-type ``norm``), or
            a local state dict file.
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
        if arch not in ARCHS:
            raise ValueError(f"MobileNetV3 arch must be one of {list(ARCHS)}, got {arch!r}")
        super().__init__(
            f"mobilenet_v3_{arch}", out_indices=out_indices, frozen_stages=frozen_stages, norm=norm,
            norm_eval=norm_eval, weights=weights,
        )  # fmt: skip

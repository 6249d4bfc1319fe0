"""Photometric augmentation steps: YOLOX's HSV jitter and the photometric distortion of SSD / RT-DETR.

They change pixel values only: boxes, labels, ignore flags, masks and ``meta`` pass through. Random
numbers come from :func:`lightdet.data.streams.augment_generator`; each step draws its parameters and
calls a pure function of them (:func:`hsv_shift`, :func:`photometric_distort`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from torch import Tensor

from lightdet.data.streams import augment_generator, chance, uniform
from lightdet.structures import DetSample

__all__ = ["RandomHSV", "RandomPhotometricDistort", "hsv_shift", "photometric_distort"]


def hsv_shift(image: Tensor, gains: Sequence[int]) -> Tensor:
    """Adds ``gains = (hue, saturation, value)`` in OpenCV's 8-bit HSV (hue in ``0..179``, cyclic;
    saturation and value clamped to ``0..255``) to a ``uint8 [3, H, W]`` RGB image."""
    import cv2  # OpenCV comes with albumentations; imported here so that light tools do not pay for it

    if not any(gains):
        return image
    hsv = cv2.cvtColor(np.ascontiguousarray(image.permute(1, 2, 0).numpy()), cv2.COLOR_RGB2HSV).astype(
        np.int16
    )
    hsv[..., 0] = (hsv[..., 0] + int(gains[0])) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] + int(gains[1]), 0, 255)
    hsv[..., 2] = np.clip(hsv[..., 2] + int(gains[2]), 0, 255)
    rgb = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()


class RandomHSV:
    """YOLOX's HSV jitter (MMDetection's ``YOLOXHSVRandomAug``).

    Each of hue, saturation and value is, with probability 1/2, shifted by an integer drawn from
    ``(-delta, delta)`` (truncated toward zero), in OpenCV's 8-bit HSV units (hue 0..179).
    """

    def __init__(self, hue_delta: int = 5, saturation_delta: int = 30, value_delta: int = 30) -> None:
        self.deltas = (int(hue_delta), int(saturation_delta), int(value_delta))

    def draw_gains(self) -> tuple[int, int, int]:
        """This call's ``(hue, saturation, value)`` shifts."""
        gen = augment_generator()
        raw = (torch.rand(3, generator=gen) * 2 - 1) * torch.tensor(self.deltas, dtype=torch.float32)
        on = torch.randint(0, 2, (3,), generator=gen)
        h, s, v = (raw * on).trunc().to(torch.int64).tolist()
        return h, s, v

    def __call__(self, sample: DetSample) -> DetSample:
        return replace(sample, image=hsv_shift(sample.image, self.draw_gains()))

    def __repr__(self) -> str:
        h, s, v = self.deltas
        return f"RandomHSV(hue_delta={h}, saturation_delta={s}, value_delta={v})"


def photometric_distort(
    image: Tensor,
    *,
    brightness: float | None = None,
    contrast: float | None = None,
    contrast_first: bool = True,
    saturation: float | None = None,
    hue: float | None = None,
    permutation: Sequence[int] | None = None,
) -> Tensor:
    """Applies brightness, contrast (first or last), saturation and hue factors (None skips one) and a
    channel permutation to a ``uint8 [3, H, W]`` image, with torchvision's kernels and in its order."""
    if brightness is not None:
        image = TF.adjust_brightness(image, brightness)
    if contrast is not None and contrast_first:
        image = TF.adjust_contrast(image, contrast)
    if saturation is not None:
        image = TF.adjust_saturation(image, saturation)
    if hue is not None:
        image = TF.adjust_hue(image, hue)
    if contrast is not None and not contrast_first:
        image = TF.adjust_contrast(image, contrast)
    if permutation is not None:
        image = image[list(permutation)]
    return image.contiguous()


def _range(value: Sequence[float], name: str) -> tuple[float, float]:
    if len(value) != 2 or value[0] > value[1]:
        raise ValueError(
            f"RandomPhotometricDistort: {name} must be (low, high) with low <= high, got {list(value)}"
        )
    return float(value[0]), float(value[1])


class RandomPhotometricDistort:
    """SSD's photometric distortion as torchvision's ``RandomPhotometricDistort`` (RT-DETR's recipe, p 0.5).

    Brightness, contrast, saturation and hue factors are each applied with probability ``p`` (factors
    drawn from their ranges; hue as a fraction of the colour circle), contrast before or after the
    colour changes with probability 1/2, and the channels are permuted with probability ``p``.
    MMDetection's ``PhotoMetricDistortion`` is the same scheme with an additive brightness delta.
    """

    def __init__(
        self,
        brightness: Sequence[float] = (0.875, 1.125),
        contrast: Sequence[float] = (0.5, 1.5),
        saturation: Sequence[float] = (0.5, 1.5),
        hue: Sequence[float] = (-0.05, 0.05),
        p: float = 0.5,
    ) -> None:
        self.ranges = {
            "brightness": _range(brightness, "brightness"),
            "contrast": _range(contrast, "contrast"),
            "saturation": _range(saturation, "saturation"),
            "hue": _range(hue, "hue"),
        }
        self.p = p

    def draw_params(self) -> dict[str, object]:
        """This call's keyword arguments of :func:`photometric_distort`."""
        params: dict[str, object] = {
            k: uniform(*r) if chance(self.p) else None for k, r in self.ranges.items()
        }
        params["contrast_first"] = chance(0.5)
        params["permutation"] = (
            torch.randperm(3, generator=augment_generator()).tolist() if chance(self.p) else None
        )
        return params

    def __call__(self, sample: DetSample) -> DetSample:
        return replace(sample, image=photometric_distort(sample.image, **self.draw_params()))  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return (
            f"RandomPhotometricDistort({', '.join(f'{k}={v}' for k, v in self.ranges.items())}, p={self.p})"
        )

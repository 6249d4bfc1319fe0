"""Turns a collated ``uint8`` batch into the normalised, padded float tensor the backbone sees (on device)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class DetPreprocessor(nn.Module):
    """Normalises ``uint8`` images, zeroes their padding and pads the batch to a multiple of ``size_divisor``.

    ``DetBatch`` pads every image to the batch's largest height/width with zeros *before* normalisation; after
    ``(x - mean) / std`` those pixels would no longer be zero, so the region beyond each image's valid size is
    zeroed again (torchvision and MMDetection both pad normalised images with zeros).

    Args:
        mean: per-channel mean in 0-255 pixel units (RGB order of the input).
        std: per-channel standard deviation in 0-255 units.
        size_divisor: the padded height and width are rounded up to a multiple of this (1 disables).
        to_bgr: reverse the channel order after normalising (caffe-style weights expect BGR); ``mean``/``std``
            are given in the input's RGB order either way.
    """

    def __init__(
        self,
        mean: Sequence[float] = (123.675, 116.28, 103.53),
        std: Sequence[float] = (58.395, 57.12, 57.375),
        size_divisor: int = 32,
        *,
        to_bgr: bool = False,
    ) -> None:
        super().__init__()
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"DetPreprocessor: mean and std need 3 values, got {list(mean)} and {list(std)}")
        if size_divisor < 1:
            raise ValueError(f"DetPreprocessor: size_divisor must be >= 1, got {size_divisor}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), False)
        self.size_divisor = size_divisor
        self.to_bgr = to_bgr

    def forward(
        self, images: Tensor, sizes: Sequence[tuple[int, int]]
    ) -> tuple[Tensor, list[tuple[int, int]]]:
        """``uint8 [B, 3, H, W]`` and each image's valid ``(h, w)`` -> ``float [B, 3, H', W']`` and sizes.

        ``H'``/``W'`` are ``H``/``W`` rounded up to the size divisor; pixels outside each valid region are 0.
        """
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(
                f"DetPreprocessor expects uint8 [B, 3, H, W], got {images.dtype} {tuple(images.shape)}"
            )
        if len(sizes) != images.shape[0]:
            raise ValueError(f"DetPreprocessor: {len(sizes)} image sizes for a batch of {images.shape[0]}")
        x = (images.float() - self.mean) / self.std
        if self.to_bgr:
            x = x.flip(1)
        x = x * self._valid_mask(sizes, images.shape[-2:], x.device)
        h, w = images.shape[-2:]
        d = self.size_divisor
        x = F.pad(x, (0, -w % d, 0, -h % d))
        return x.contiguous(), [(int(hh), int(ww)) for hh, ww in sizes]

    @staticmethod
    def _valid_mask(sizes: Sequence[tuple[int, int]], hw: torch.Size, device: torch.device) -> Tensor:
        """``[B, 1, H, W]`` float mask, 1 inside each image's valid ``(h, w)`` region."""
        valid = torch.tensor([list(s) for s in sizes], device=device)  # [B, 2]
        rows = torch.arange(hw[0], device=device)[None, :] < valid[:, :1]  # [B, H]
        cols = torch.arange(hw[1], device=device)[None, :] < valid[:, 1:]  # [B, W]
        return (rows[:, :, None] & cols[:, None, :]).unsqueeze(1).float()

"""Reference torchvision models with seeded, spread-out random weights, and smooth test images.

Random heads of an untrained model score everything alike; spreading the norm statistics and the class
logits' weights makes detections (and their order) differ enough for a strict comparison.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from lightdet.structures import DetBatch, DetSample, ImageMeta


def randomize_norms(
    model: nn.Module, kinds: tuple[type[nn.Module], ...] = (nn.BatchNorm2d,), weight_high: float = 1.0
) -> None:
    """Affine weights ~ U(0.5, ``weight_high``), biases ~ N(0, 0.1) for ``kinds``; BatchNorm stats spread too."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, kinds):
                m.weight.uniform_(0.5, weight_high)
                m.bias.normal_(0, 0.1)
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)


def two_stage_reference(factory: Callable[..., nn.Module], path: Path, *, min_size: int, max_size: int) -> nn.Module:
    """torchvision's ``factory`` (Faster / Mask R-CNN) with seeded weights, saved to ``path``, in eval mode."""
    torch.manual_seed(0)
    model = factory(weights=None, weights_backbone=None, min_size=min_size, max_size=max_size).eval()
    randomize_norms(model)
    with torch.no_grad():
        model.rpn.head.cls_logits.weight.normal_(0, 0.3)
        model.roi_heads.box_predictor.cls_score.weight.normal_(0, 0.3)
    torch.save(model.state_dict(), path)
    return model


def smooth_image(h: int, w: int, g: torch.Generator) -> torch.Tensor:
    """A ``uint8 [3, h, w]`` image of smooth random colour blobs (upsampled noise)."""
    low = torch.rand(1, 3, h // 16, w // 16, generator=g)
    image = torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear")[0]
    return (image * 255).round().to(torch.uint8)


def unlabelled_batch(images: list[torch.Tensor]) -> DetBatch:
    """A ``DetBatch`` of ``images`` at their own size (no resize), without targets; image ids 0, 1, ..."""
    return DetBatch.collate([
        DetSample(image=im, boxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.int64),
                  meta=ImageMeta(i, f"{i}.jpg", im.shape[1:], im.shape[1:]))
        for i, im in enumerate(images)
    ])  # fmt: skip

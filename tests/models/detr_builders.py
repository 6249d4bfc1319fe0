"""Tiny seeded RT-DETR, RT-DETRv2 (discrete sampling) and D-FINE from the shipped model configs, for 96-160 px
test images: small widths, 2 decoder layers, 50 queries, the top 60 (query, class) pairs per image."""

from __future__ import annotations

import torch
from hydra.utils import instantiate
from torch import nn

from lightdet.composition import compose_config

TINY = ["model.decoder.num_layers=2", "model.decoder.num_queries=50", "model.num_top_queries=60"]
#: A 64-wide RT-DETR on ResNet-18-vd (the shapes recipe's model, narrower).
TINY_RTDETR = [
    "model.encoder.hidden_dim=64", "model.encoder.ffn_dim=128", "model.decoder.in_channels=[64,64,64]",
    "model.decoder.hidden_dim=64", "model.decoder.ffn_dim=128",
]


#: the DETR prediction layers, by name: lightdet's and transformers' (``class_embed``, ``bbox_embed``)
HEAD_KEYS = ("class_embed", "score_head", "bbox_embed", "bbox_head", "lqe", "gateway")


def spread(model: nn.Module, seed: int = 0, *, head_std: float = 0.05) -> None:
    """Seeded, spread-out norm statistics, affine blocks and prediction-layer weights (``head_std``), so that
    boxes leave their anchors and scores differ clearly. Used on lightdet's and on ``transformers``' models."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith("running_mean") or name.endswith("lab.bias"):
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
            elif t.is_floating_point() and any(k in name for k in HEAD_KEYS):
                t.copy_(torch.randn(t.shape, generator=g) * head_std)


def build_detr(model: str, overrides: list[str], num_classes: int = 3) -> nn.Module:
    """``+model=<model>`` with ``overrides``, seeded and spread, in eval mode."""
    cfg = compose_config(None, [f"+model={model}", f"+dataset.num_classes={num_classes}", *TINY, *overrides])
    torch.manual_seed(0)
    detector = instantiate(cfg.model)
    spread(detector)
    return detector.eval()


def build_tiny_rtdetr(num_classes: int = 3) -> nn.Module:
    return build_detr("rtdetr_small", TINY_RTDETR, num_classes)


def build_tiny_rtdetrv2(num_classes: int = 3) -> nn.Module:
    """RT-DETRv2's options: per-level point counts and discrete (nearest pixel) sampling."""
    return build_detr(
        "rtdetrv2_r18vd",
        [*TINY_RTDETR, "model.decoder.num_points=[4,4,2]", "model.decoder.method=discrete"],
        num_classes,
    )


def build_tiny_dfine(num_classes: int = 3) -> nn.Module:
    """D-FINE-N: HGNetv2-B0 at strides 16 and 32, FDR and LQE (the smallest shipped D-FINE, 2 layers here)."""
    return build_detr("dfine_n", [], num_classes)

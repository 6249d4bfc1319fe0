"""Small seeded ``transformers`` RT-DETR / RT-DETRv2 / D-FINE models (test-only reference), and their
conversion into lightdet through the same path as ``lightdet-convert hf``."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from hydra.utils import instantiate
from torch import nn

from lightdet.checkpoint.from_hf import (
    convert_hf_state_dict,
    hf_class_names,
    hf_model_overrides,
    read_hf_folder,
)
from lightdet.checkpoint.report import check_against_target
from lightdet.composition import compose_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/models: imported from other folders too
from detr_builders import spread  # noqa: E402

transformers = __import__("pytest").importorskip("transformers")

TINY = dict(encoder_hidden_dim=64, d_model=64, decoder_in_channels=[64, 64, 64], decoder_layers=2, num_queries=60,
            num_labels=5, encoder_ffn_dim=128, decoder_ffn_dim=128)


def tiny_resnet_config() -> object:
    return transformers.RTDetrResNetConfig(
        embedding_size=64, hidden_sizes=[64, 128, 256, 512], depths=[1, 1, 1, 1], layer_type="basic",
        out_features=["stage2", "stage3", "stage4"],
    )


def tiny_hgnet_config() -> object:
    """HGNetv2-B0's stage table (the smallest published one)."""
    return transformers.HGNetV2Config(
        stem_channels=[3, 16, 16], stage_in_channels=[16, 64, 256, 512], stage_mid_channels=[16, 32, 64, 128],
        stage_out_channels=[64, 256, 512, 1024], stage_num_blocks=[1, 1, 2, 1],
        stage_downsample=[False, True, True, True], stage_light_block=[False, False, True, True],
        stage_kernel_size=[3, 3, 5, 5], stage_numb_of_layers=[3, 3, 3, 3], use_learnable_affine_block=True,
        hidden_sizes=[64, 256, 512, 1024],
        out_features=["stage2", "stage3", "stage4"],
    )


def make_reference(kind: str, path: Path, **overrides: object) -> nn.Module:
    """A seeded ``transformers`` model of ``kind`` (rt_detr, rt_detr_v2, d_fine) saved to ``path``, in eval mode."""
    torch.manual_seed(0)
    args = {**TINY, **overrides}
    if kind == "d_fine":
        config = transformers.DFineConfig(backbone_config=tiny_hgnet_config(), encoder_in_channels=[256, 512, 1024],
                                          decoder_n_points=[3, 6, 3], **args)
        model = transformers.DFineForObjectDetection(config)
    else:
        cls = {"rt_detr": (transformers.RTDetrConfig, transformers.RTDetrForObjectDetection),
               "rt_detr_v2": (transformers.RTDetrV2Config, transformers.RTDetrV2ForObjectDetection)}[kind]
        config = cls[0](backbone_config=tiny_resnet_config(), encoder_in_channels=[128, 256, 512], **args)
        model = cls[1](config)
    spread(model, head_std=0.3)
    model.eval()
    model.save_pretrained(path)
    return model


def converted(path: Path) -> tuple[nn.Module, object]:
    """The lightdet model built from ``path``'s config.json and loaded with its converted weights."""
    config, state = read_hf_folder(path)
    name, overrides = hf_model_overrides(config)
    cfg = compose_config(None, [f"+model={name}", f"+dataset.num_classes={len(hf_class_names(config))}", *overrides])
    model = instantiate(cfg.model)
    out, report = convert_hf_state_dict(state, config["model_type"])
    out = check_against_target(out, report, model.state_dict())
    model.load_state_dict(out, strict=False)
    return model.eval(), report

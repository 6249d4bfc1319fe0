"""Any ``timm`` model as a detection backbone (``features_only``), with its channels and strides declared.

Weights never download silently: ``weights`` is a local file (read with ``weights_only=True``, or as
safetensors) or ``"hf_cache"``, the model's default pretrained file already in the Hugging Face cache.
``timm`` is an optional dependency (``pip install lightdet[timm]``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lightdet.models.layers import BN_TYPES

HF_CACHE = "hf_cache"
_HF_FILES = ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def _timm() -> Any:
    try:
        import timm
    except ImportError:
        raise ImportError(
            "TimmBackbone needs timm: pip install 'lightdet[timm]' (or pip install timm)"
        ) from None
    return timm


class TimmBackbone(nn.Module):
    """A ``timm.create_model(name, features_only=True)`` network returning its feature maps, finest first.

    Args:
        name: a timm model name, optionally with a pretrained tag (``"resnet50.a1_in1k"``,
            ``"convnext_tiny"``, ``"vit_small_patch14_dinov2"``).
        out_indices: timm feature indices to return (timm's numbering: for ResNets 0 is the stride-2 stem,
            1..4 the stages); None: the last feature map at each of the strides 4, 8, 16 and 32 that the
            model has (a plain ViT: its last block, at the patch stride).
        frozen_stages: -1 none; k >= 0: every parameter up to and including the module that produces timm
            feature k gets no gradient and its norm layers stay in eval mode (ResNets: 1 = stem + layer1, as
            :class:`~lightdet.models.ResNet`).
        norm: None or ``"BN"`` keep the model's norm layers; ``"SyncBN"`` converts its BatchNorms to
            SyncBatchNorm, ``"FrozenBN"`` to frozen ones (statistics and affine terms fixed).
        norm_eval: keep BatchNorm layers in eval mode (frozen statistics) while training.
        weights: None (random init), the path of a state dict (``.pth``/``.pt``/``.bin`` read with
            ``weights_only=True``, or ``.safetensors``) in the classifier model's key names, or ``"hf_cache"``:
            the model's default pretrained weights from the local Hugging Face cache (an error, never a
            download, if they are not there). timm adapts them to the model (e.g. a ViT's patch and position
            embeddings to ``model_kwargs``) and drops the classifier.
        model_kwargs: more ``timm.create_model`` arguments, e.g. ``{patch_size: 16, dynamic_img_size: true}``
            for a DINOv2 ViT at stride 16 on any input size, or ``{drop_path_rate: 0.1}``.

    Attributes:
        out_channels, strides: of each returned map (``feature_info`` of the timm model).

    ``forward``: ``[B, 3, H, W]`` -> ``[B, out_channels[i], H / strides[i], W / strides[i]]`` per index.
    """

    def __init__(
        self,
        name: str,
        *,
        out_indices: Sequence[int] | None = None,
        frozen_stages: int = -1,
        norm: str | None = None,
        norm_eval: bool = False,
        weights: str | None = None,
        model_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        kwargs = dict(model_kwargs or {})
        if weights is not None:
            state = read_pretrained(name, weights)
            kwargs.update(pretrained=True, pretrained_cfg_overlay={"state_dict": state})
        if out_indices is not None:
            kwargs["out_indices"] = tuple(int(i) for i in out_indices)
        self.model = _convert_norms(_timm().create_model(name, features_only=True, **kwargs), norm)
        info = self.model.feature_info  # of the maps the model returns
        reductions = [int(r) for r in info.reduction()]
        self._picked = (
            list(range(len(reductions))) if out_indices is not None else _at_pyramid_strides(reductions)
        )
        self.out_channels = [int(info.channels()[i]) for i in self._picked]
        self.strides = [reductions[i] for i in self._picked]
        self.frozen_stages, self.norm_eval = frozen_stages, norm_eval
        feature_modules = [entry["module"] for entry in info.info]  # every feature, timm's numbering
        self._frozen = _frozen_parameter_names(self.model, feature_modules, frozen_stages)
        for pname, param in self.model.named_parameters():
            if pname in self._frozen:
                param.requires_grad_(False)
        self.train()

    def train(self, mode: bool = True) -> TimmBackbone:
        """Sets the mode; modules holding frozen parameters (and, with ``norm_eval``, every BN) stay in eval."""
        super().train(mode)
        for module_name, module in self.model.named_modules():
            frozen = any(
                f"{module_name}.{p}" in self._frozen for p, _ in module.named_parameters(recurse=False)
            )
            if frozen or (mode and self.norm_eval and isinstance(module, BN_TYPES)):
                module.eval()
        return self

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = self.model(x)
        return [feats[i] for i in self._picked]


def _convert_norms(model: nn.Module, norm: str | None) -> nn.Module:
    """``model`` with its BatchNorms as ``norm`` asks (module docstring of :class:`TimmBackbone`)."""
    if norm in (None, "BN"):
        return model
    if norm == "SyncBN":
        return _timm().layers.convert_sync_batchnorm(model)
    if norm == "FrozenBN":
        return _timm().layers.freeze_batch_norm_2d(model)
    raise ValueError(f"TimmBackbone norm must be None, 'BN', 'SyncBN' or 'FrozenBN', got {norm!r}")


def _at_pyramid_strides(reductions: Sequence[int]) -> list[int]:
    """Positions of the last map at each stride among 4, 8, 16, 32 (all of them if none is there)."""
    last = {r: i for i, r in enumerate(reductions) if r in (4, 8, 16, 32)}
    return sorted(last.values()) or list(range(len(reductions)))


def _frozen_parameter_names(model: nn.Module, module_names: Sequence[str], frozen_stages: int) -> set[str]:
    """Parameters registered up to and including the module of feature ``frozen_stages`` (timm registers
    the stem and stages in forward order)."""
    if frozen_stages < 0:
        return set()
    if frozen_stages >= len(module_names):
        raise ValueError(
            f"TimmBackbone frozen_stages must be in -1..{len(module_names) - 1}, got {frozen_stages}"
        )
    target = module_names[frozen_stages]
    # features_only wrappers keep the names, flatten them with "_" or nest the model under "model."
    prefixes = (f"{target}.", f"{target.replace('.', '_')}.", f"model.{target}.")
    names = [n for n, _ in model.named_parameters()]
    last = max((i for i, n in enumerate(names) if n.startswith(prefixes)), default=-1)
    if last < 0:
        raise ValueError(f"TimmBackbone: no parameters found for feature module {target!r} to freeze")
    return set(names[: last + 1])


def read_pretrained(name: str, weights: str) -> dict[str, Tensor]:
    """The state dict ``weights`` names for model ``name`` (see :class:`TimmBackbone`); nothing is downloaded."""
    path = _hf_cached_file(name) if weights == HF_CACHE else Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"TimmBackbone weights {weights!r}: no such file (or 'hf_cache')")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"TimmBackbone weights {str(path)!r} do not hold a state dict of tensors")
    return state


def _hf_cached_file(name: str) -> Path:
    """The Hugging Face cache's copy of ``name``'s default pretrained weights (never downloads)."""
    from huggingface_hub import try_to_load_from_cache

    cfg = _timm().models.get_pretrained_cfg(name)
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not repo:
        raise ValueError(f"TimmBackbone: timm names no Hugging Face weights for {name!r}; give a file path")
    files = [cfg.hf_hub_filename] if getattr(cfg, "hf_hub_filename", None) else list(_HF_FILES)
    for filename in files:
        found = try_to_load_from_cache(repo, filename)
        if isinstance(found, str):
            return Path(found)
    raise FileNotFoundError(
        f"TimmBackbone: {repo} is not in the Hugging Face cache (lightdet never downloads weights); "
        f"fetch it once with `huggingface-cli download {repo}`, or give weights=PATH"
    )

"""Optimizer parameter groups (decay multipliers for norms and biases, per-prefix lr/decay) and lr scaling."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torchvision.ops import FrozenBatchNorm2d

__all__ = ["NORM_TYPES", "build_param_groups", "scale_lr"]

#: Modules whose weights and biases are "norm" parameters. ``_NormBase`` covers BatchNorm*d, SyncBatchNorm
#: and InstanceNorm*d; FrozenBatchNorm2d only holds buffers but a subclass may make them trainable.
NORM_TYPES: tuple[type[nn.Module], ...] = (_NormBase, nn.GroupNorm, nn.LayerNorm, FrozenBatchNorm2d)

_CUSTOM_FIELDS = ("lr_mult", "decay_mult")


def _check_custom_keys(custom_keys: Mapping[str, Mapping[str, float]]) -> None:
    for prefix, spec in custom_keys.items():
        unknown = sorted(set(spec) - set(_CUSTOM_FIELDS))
        if unknown:
            raise ValueError(
                f"custom_keys[{prefix!r}]: unknown field(s) {unknown}; expected any of {list(_CUSTOM_FIELDS)}"
            )


def _match_prefix(name: str, prefixes: list[str]) -> str | None:
    """The longest of ``prefixes`` that ``name`` starts with (prefixes sorted longest first)."""
    return next((p for p in prefixes if name.startswith(p)), None)


def build_param_groups(
    model: nn.Module,
    *,
    base_lr: float,
    weight_decay: float,
    norm_decay_mult: float = 1.0,
    bias_decay_mult: float = 1.0,
    bias_lr_mult: float = 1.0,
    custom_keys: Mapping[str, Mapping[str, float]] | None = None,
) -> list[dict[str, Any]]:
    """Splits the trainable parameters into optimizer groups with their own lr and weight decay.

    Each parameter's kind is ``norm`` (weight or bias of a module in :data:`NORM_TYPES`), ``bias`` (any
    other parameter named ``bias``) or ``default``. Its weight decay is ``weight_decay`` times
    ``norm_decay_mult`` / ``bias_decay_mult`` for its kind, times the ``decay_mult`` of the longest
    ``custom_keys`` prefix its full name starts with; its lr is ``base_lr`` times that prefix's
    ``lr_mult`` (times ``bias_lr_mult`` for a ``bias`` parameter). (Unlike MMDetection, a custom key composes with the norm/bias multipliers instead of
    replacing them, so ``{backbone: {lr_mult: 0.1}}`` keeps the backbone's norms free of decay.)

    Args:
        model: the module to optimise; parameters with ``requires_grad=False`` are left out, a shared
            parameter is listed once.
        base_lr, weight_decay: the optimizer's lr and weight decay.
        norm_decay_mult, bias_decay_mult: decay multipliers for norm and bias parameters.
        bias_lr_mult: lr multiplier for bias parameters outside norm layers (MMDetection's FCOS uses 2).
        custom_keys: ``{name prefix: {"lr_mult": float, "decay_mult": float}}`` (both optional).

    Returns:
        One dict per non-empty group, in order of first appearance: ``params``, ``lr``,
        ``weight_decay``, ``lr_mult`` (its lr relative to ``base_lr``) and ``name`` (``"<prefix>:<kind>"``
        or ``"<kind>"``, for debugging).

    Raises:
        ValueError: on an unknown field in ``custom_keys`` or a model without trainable parameters.
    """
    custom_keys = custom_keys or {}
    _check_custom_keys(custom_keys)
    prefixes = sorted(custom_keys, key=len, reverse=True)
    groups: dict[str, dict[str, Any]] = {}
    seen: set[int] = set()
    for module_name, module in model.named_modules():
        is_norm = isinstance(module, NORM_TYPES)
        for param_name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            full_name = f"{module_name}.{param_name}" if module_name else param_name
            kind = "norm" if is_norm else "bias" if param_name == "bias" else "default"
            decay = {"norm": norm_decay_mult, "bias": bias_decay_mult, "default": 1.0}[kind]
            prefix = _match_prefix(full_name, prefixes)
            custom = custom_keys.get(prefix, {}) if prefix is not None else {}
            lr_mult = float(custom.get("lr_mult", 1.0)) * (bias_lr_mult if kind == "bias" else 1.0)
            decay *= float(custom.get("decay_mult", 1.0))
            name = f"{prefix}:{kind}" if prefix is not None else kind
            group = groups.setdefault(
                name,
                {"params": [], "lr": base_lr * lr_mult, "weight_decay": weight_decay * decay,
                 "lr_mult": lr_mult, "name": name},
            )  # fmt: skip
            group["params"].append(param)
    if not groups:
        raise ValueError(f"{type(model).__name__} has no trainable parameters (all have requires_grad=False)")
    return list(groups.values())


def scale_lr(base_lr: float, global_batch: int, base_batch: int = 16) -> float:
    """The linear scaling rule: ``base_lr * global_batch / base_batch``.

    ``base_lr`` is the lr published for ``base_batch`` images per step (MMDetection: 0.02 for 16).
    """
    if global_batch <= 0 or base_batch <= 0:
        raise ValueError(
            f"scale_lr: batch sizes must be positive, got global={global_batch} base={base_batch}"
        )
    return base_lr * global_batch / base_batch

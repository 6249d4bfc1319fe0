"""Optimizer parameter groups (decay multipliers for norms and biases, per-prefix lr/decay) and lr scaling.

:class:`ParamGroupRules` splits a model's parameters into groups that carry multipliers;
:func:`build_optimizer` builds the optimizer on them and turns the multipliers into each group's lr and
weight decay, reading the base values from the built optimizer (what its factory bound, else its class's
defaults).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.optim import Optimizer
from torchvision.ops import FrozenBatchNorm2d

__all__ = ["NORM_TYPES", "ParamGroupRules", "PrefixRule", "build_optimizer", "scale_lr"]

#: Modules whose weights and biases are "norm" parameters. ``_NormBase`` covers BatchNorm*d, SyncBatchNorm
#: and InstanceNorm*d; FrozenBatchNorm2d only holds buffers but a subclass may make them trainable.
NORM_TYPES: tuple[type[nn.Module], ...] = (_NormBase, nn.GroupNorm, nn.LayerNorm, FrozenBatchNorm2d)

#: A parameter group: ``params``, ``lr_mult``, ``decay_mult`` and ``name`` (the optimizer adds the rest).
ParamGroup = dict[str, Any]


@dataclass
class PrefixRule:
    """Multipliers for the parameters whose full name starts with a prefix (see :class:`ParamGroupRules`)."""

    lr_mult: float = 1.0
    decay_mult: float = 1.0


def _prefix_rule(prefix: str, spec: PrefixRule | Mapping[str, float]) -> PrefixRule:
    if isinstance(spec, PrefixRule):
        return spec
    known = [f.name for f in fields(PrefixRule)]
    if not isinstance(spec, Mapping) or set(spec) - set(known):
        unknown = sorted(set(spec) - set(known)) if isinstance(spec, Mapping) else spec
        raise ValueError(f"custom_keys[{prefix!r}]: unknown field(s) {unknown}; expected any of {known}")
    return PrefixRule(**spec)


@dataclass(kw_only=True)
class ParamGroupRules:
    """How the trainable parameters split into optimizer groups (MMDetection's ``paramwise_cfg``).

    Each parameter's kind is ``norm`` (weight or bias of a module in :data:`NORM_TYPES`), ``bias`` (any
    other parameter named ``bias``) or ``default``. Its decay multiplier is ``norm_decay_mult`` /
    ``bias_decay_mult`` for its kind times the ``decay_mult`` of the longest ``custom_keys`` prefix its full
    name starts with; its lr multiplier is that prefix's ``lr_mult`` (times ``bias_lr_mult`` for a ``bias``
    parameter). (Unlike MMDetection, a custom key composes with the norm/bias multipliers instead of
    replacing them, so ``{backbone: {lr_mult: 0.1}}`` keeps the backbone's norms free of decay.)

    Args:
        norm_decay_mult, bias_decay_mult: decay multipliers for norm and bias parameters.
        bias_lr_mult: lr multiplier for bias parameters outside norm layers (MMDetection's FCOS uses 2).
        custom_keys: ``{name prefix: PrefixRule}``; a mapping ``{"lr_mult": ..., "decay_mult": ...}`` (both
            optional, as in a yaml file) is turned into a :class:`PrefixRule`.

    Raises:
        ValueError: on an unknown field in ``custom_keys``.
    """

    norm_decay_mult: float = 1.0
    bias_decay_mult: float = 1.0
    bias_lr_mult: float = 1.0
    custom_keys: Mapping[str, PrefixRule | Mapping[str, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.prefix_rules = {prefix: _prefix_rule(prefix, spec) for prefix, spec in self.custom_keys.items()}

    def _multipliers(self, full_name: str, kind: str) -> tuple[str | None, float, float]:
        """``(prefix, lr_mult, decay_mult)`` of a parameter; the longest matching prefix wins."""
        prefix = max((p for p in self.prefix_rules if full_name.startswith(p)), key=len, default=None)
        rule = self.prefix_rules[prefix] if prefix is not None else PrefixRule()
        decay = {"norm": self.norm_decay_mult, "bias": self.bias_decay_mult, "default": 1.0}[kind]
        lr_mult = float(rule.lr_mult) * (self.bias_lr_mult if kind == "bias" else 1.0)
        return prefix, lr_mult, decay * float(rule.decay_mult)

    def __call__(self, model: nn.Module) -> list[ParamGroup]:
        """The groups of ``model``'s trainable parameters (a shared parameter is listed once).

        Returns:
            One dict per non-empty group, in order of first appearance: ``params``, ``lr_mult``,
            ``decay_mult`` and ``name`` (``"<prefix>:<kind>"`` or ``"<kind>"``, for debugging).

        Raises:
            ValueError: a model without trainable parameters.
        """
        groups: dict[str, ParamGroup] = {}
        seen: set[int] = set()
        for module_name, module in model.named_modules():
            is_norm = isinstance(module, NORM_TYPES)
            for param_name, param in module.named_parameters(recurse=False):
                if not param.requires_grad or id(param) in seen:
                    continue
                seen.add(id(param))
                full_name = f"{module_name}.{param_name}" if module_name else param_name
                kind = "norm" if is_norm else "bias" if param_name == "bias" else "default"
                prefix, lr_mult, decay_mult = self._multipliers(full_name, kind)
                name = f"{prefix}:{kind}" if prefix is not None else kind
                group = groups.setdefault(
                    name, {"params": [], "lr_mult": lr_mult, "decay_mult": decay_mult, "name": name}
                )
                group["params"].append(param)
        if not groups:
            name = type(model).__name__
            raise ValueError(f"{name} has no trainable parameters (all have requires_grad=False)")
        return list(groups.values())


def build_optimizer(
    factory: Callable[[list[ParamGroup]], Optimizer],
    model: nn.Module,
    rules: Callable[[nn.Module], list[ParamGroup]],
    *,
    scale: Callable[[float], float] | None = None,
) -> Optimizer:
    """``factory(rules(model))`` with each group's lr and weight decay set from the optimizer's own.

    The base lr and weight decay are the built optimizer's ``defaults`` (what the factory bound, else the
    class's defaults); a group's lr is ``scale(lr) * lr_mult`` and its weight decay ``weight_decay *
    decay_mult`` (multipliers default to 1; an optimizer without ``weight_decay`` keeps its groups as they
    are).

    Args:
        factory: takes the groups, returns the optimizer, e.g. ``partial(torch.optim.SGD, lr=0.02)``.
        model: the module to optimise.
        rules: splits the trainable parameters into groups (:class:`ParamGroupRules`).
        scale: maps the base lr to the one used (e.g. linear scaling by the batch size); None keeps it.

    Raises:
        TypeError: the optimizer has no default ``lr``.
    """
    optimizer = factory(rules(model))
    if "lr" not in optimizer.defaults:
        raise TypeError(
            f"{type(optimizer).__name__} has no default lr: bind one in its factory, e.g. a Hydra node with "
            "`_partial_: true` and `lr: 0.02`"
        )
    lr = float(optimizer.defaults["lr"])
    if scale is not None:
        lr = scale(lr)
    weight_decay = optimizer.defaults.get("weight_decay")
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_mult", 1.0)
        if weight_decay is not None:
            group["weight_decay"] = float(weight_decay) * group.get("decay_mult", 1.0)
    return optimizer


def scale_lr(base_lr: float, global_batch: int, base_batch: int = 16) -> float:
    """The linear scaling rule: ``base_lr * global_batch / base_batch``.

    ``base_lr`` is the lr published for ``base_batch`` images per step (MMDetection: 0.02 for 16).
    """
    if global_batch <= 0 or base_batch <= 0:
        raise ValueError(
            f"scale_lr: batch sizes must be positive, got global={global_batch} base={base_batch}"
        )
    return base_lr * global_batch / base_batch

"""Folding inference-time BatchNorm into the convolution before it (exact: ``y = s * conv(x) + t`` becomes one
conv with weight ``s * W`` and bias ``s * b + t``), and :func:`optimize_for_inference`, the rewrites that every
inference path applies (``Predictor``, ``lightdet-test``, ``lightdet-infer``, ``lightdet-bench``, export).

A pair is folded only where that is exact: the norm is a :class:`~torchvision.ops.FrozenBatchNorm2d` or a
``BatchNorm2d`` / ``SyncBatchNorm`` in eval mode with running statistics, and the graph (``torch.fx``) shows
that every call of the conv feeds only that norm and every call of the norm reads only that conv. Modules that
``torch.fx`` cannot trace are searched child by child.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor, fx, nn
from torchvision.ops import FrozenBatchNorm2d

_BATCH_NORMS = (nn.BatchNorm2d, nn.SyncBatchNorm)


def is_foldable_norm(module: nn.Module) -> bool:
    """Whether ``module`` is an affine per-channel map at inference (frozen or eval-mode running statistics)."""
    if isinstance(module, FrozenBatchNorm2d):
        return True
    return isinstance(module, _BATCH_NORMS) and not module.training and module.running_mean is not None


def norm_scale_shift(norm: nn.Module) -> tuple[Tensor, Tensor]:
    """``(scale [C], shift [C])`` with ``norm(x) = x * scale + shift`` per channel."""
    weight = norm.weight if norm.weight is not None else torch.ones_like(norm.running_mean)
    bias = norm.bias if norm.bias is not None else torch.zeros_like(norm.running_mean)
    scale = weight * (norm.running_var + norm.eps).rsqrt()
    return scale, bias - norm.running_mean * scale


@torch.no_grad()
def fold_pair(conv: nn.Conv2d, norm: nn.Module) -> None:
    """Writes ``norm`` into ``conv``'s weight and bias (the conv gains a bias if it had none)."""
    scale, shift = norm_scale_shift(norm)
    weight = conv.weight * scale.to(conv.weight.dtype)[:, None, None, None]
    bias = shift if conv.bias is None else conv.bias * scale + shift
    conv.weight = nn.Parameter(weight, requires_grad=conv.weight.requires_grad)
    conv.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad=conv.weight.requires_grad)


def _traced_pairs(module: nn.Module, graph: fx.Graph, prefix: str) -> list[tuple[str, str]]:
    """``(conv, norm)`` qualified names folded exactly in one traced graph (every call site agrees)."""
    modules = dict(module.named_modules())
    followers: dict[str, set[str | None]] = defaultdict(set)
    leaders: dict[str, set[str | None]] = defaultdict(set)
    for node in graph.nodes:
        if node.op != "call_module":
            continue
        target = modules[node.target]
        if isinstance(target, nn.Conv2d):
            users = list(node.users)
            only = users[0] if len(users) == 1 and users[0].op == "call_module" else None
            followers[node.target].add(only.target if only is not None else None)
        elif is_foldable_norm(target):
            source = node.args[0] if node.args else None
            ok = isinstance(source, fx.Node) and source.op == "call_module" and len(source.users) == 1
            leaders[node.target].add(source.target if ok else None)
    pairs = []
    for norm, sources in leaders.items():
        conv = next(iter(sources))
        if (
            len(sources) == 1
            and conv is not None
            and isinstance(modules.get(conv), nn.Conv2d)
            and followers[conv] == {norm}
        ):
            pairs.append((f"{prefix}{conv}", f"{prefix}{norm}"))
    return pairs


class _NormLeafTracer(fx.Tracer):
    """``torch.fx`` tracer that keeps torchvision's ``FrozenBatchNorm2d`` one call (not its arithmetic)."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, FrozenBatchNorm2d) or super().is_leaf_module(m, module_qualified_name)


def shared_modules(model: nn.Module) -> set[int]:
    """``id`` of every module reachable under more than one name (e.g. RTMDet's convs shared over levels,
    each level with its own norm): folding one norm into such a conv would change its other uses."""
    seen: dict[int, int] = defaultdict(int)
    for _, module in model.named_modules(remove_duplicate=False):
        seen[id(module)] += 1
    return {key for key, count in seen.items() if count > 1}


def find_foldable_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """Every exactly foldable ``(conv, norm)`` pair of ``model``, as qualified module names (a shared conv or
    norm is never folded: a child traced on its own does not show the other users)."""
    shared = shared_modules(model)
    return [
        (conv, norm)
        for conv, norm in _foldable_pairs(model, "")
        if id(model.get_submodule(conv)) not in shared and id(model.get_submodule(norm)) not in shared
    ]


def _foldable_pairs(model: nn.Module, prefix: str) -> list[tuple[str, str]]:
    """:func:`find_foldable_pairs` without the shared-module rule."""
    try:
        graph = _NormLeafTracer().trace(model)
    except Exception:  # noqa: BLE001 - any failure to trace means: look inside the children instead
        return [
            pair
            for name, child in model.named_children()
            for pair in _foldable_pairs(child, f"{prefix}{name}.")
        ]
    return _traced_pairs(model, graph, prefix)


@runtime_checkable
class BranchFoldable(Protocol):
    """A block with parallel conv+norm branches that it can merge into one conv at inference (RepVGG's
    re-parameterisation, :class:`~lightdet.models.detr.blocks.RepVggBlock`)."""

    def fold_branches(self) -> int:
        """Folds the branches' norms and merges the branches, in place, where exact; how many norms it folded."""
        ...


def fold_batchnorm(model: nn.Module) -> int:
    """Folds every exactly foldable norm of ``model`` into its conv, in place; the norm becomes
    ``nn.Identity``. :class:`BranchFoldable` blocks first fold their own norms and merge their branches.
    Returns how many norms were folded. Call it on an eval-mode copy of the model."""
    shared = shared_modules(model)
    merged = sum(
        block.fold_branches()
        for block in model.modules()
        if isinstance(block, BranchFoldable) and not any(id(m) in shared for m in block.modules())
    )
    pairs = find_foldable_pairs(model)
    for conv_name, norm_name in pairs:
        fold_pair(model.get_submodule(conv_name), model.get_submodule(norm_name))
        parent_name, _, attribute = norm_name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attribute, nn.Identity())
    return merged + len(pairs)


def optimize_for_inference(model: nn.Module, *, fold_norms: bool = True, channels_last: bool = True) -> nn.Module:
    """Puts ``model`` in eval mode and rewrites it, in place, for inference only (no training afterwards):

    - ``fold_norms``: every exactly foldable BatchNorm is folded into its conv, and RepVGG blocks become one
      conv (:func:`fold_batchnorm`); the state dict loses those norms' and branches' keys, so load weights
      before calling this.
    - ``channels_last``: parameters and buffers of 4-D shape are stored channels-last (NHWC), so that the
      convolutions run oneDNN's (CPU) or cuDNN's (GPU) NHWC kernels and hand NHWC activations to each other
      without a layout conversion per layer. Inputs may stay NCHW: a conv with an NHWC weight returns NHWC.

    The detections are the same up to float rounding (the parity tests compare them). Returns ``model``.
    """
    model.eval()
    if fold_norms:
        fold_batchnorm(model)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    return model

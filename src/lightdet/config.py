"""Config helpers shared by the command-line tools and the Python API.

The custom OmegaConf resolvers registered here let one value be derived from another instead of being
copied (DESIGN.md section 4):

* ``${lightdet.num_classes:${dataset.classes}}``: the number of classes of a ``classes`` entry (a list,
  a bare name or a path to ``classes.txt``), so ``num_classes`` reaches every head by interpolation.
* ``${lightdet.out_channels:${model.backbone}}`` and ``${lightdet.strides:${model.backbone}}``: the shape a
  part declares, read from its ``out_channels`` / ``strides`` attributes. The node is built once per
  distinct content on the ``meta`` device (no memory, no weights: the keys in :data:`WEIGHT_KEYS` are set
  to null first, since a part's shape does not depend on its weights). So a neck follows any backbone and
  the heads follow the neck: ``${lightdet.strides:${model.neck}}`` gives the pyramid's strides, and
  ``${lightdet.strides:${model.neck},32}`` those up to stride 32.
* ``${lightdet.merge:${node},{key:value,...}}``: a copy of ``node`` (resolved) with the second node merged
  on top, e.g. a cascade stage from the stage template with its own IoU; a key ``node`` lacks is an error.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from lightdet.categories import load_class_names

# constructor arguments that load weights; nulled before a part is built to read its shape
WEIGHT_KEYS = ("weights", "pretrained", "weights_backbone")
_SHAPE_ATTRIBUTES = ("out_channels", "strides")


def _num_classes(classes: object) -> int:
    return len(load_class_names(classes))  # type: ignore[arg-type]


@functools.lru_cache(maxsize=32)
def _declared_shape(spec_json: str) -> dict[str, Any]:
    """Builds the part of ``spec_json`` on the meta device and returns its shape attributes (None if absent)."""
    import torch
    from hydra.utils import instantiate

    spec = json.loads(spec_json)
    spec.update({key: None for key in WEIGHT_KEYS if key in spec})
    with torch.device("meta"):
        part = instantiate(spec)
    return {name: getattr(part, name, None) for name in _SHAPE_ATTRIBUTES}


def _shape(node: object, name: str) -> Any:
    if not isinstance(node, DictConfig) or "_target_" not in node:
        raise ValueError(f"${{lightdet.{name}:...}} needs a config node with a _target_, got {node!r}")
    spec = OmegaConf.to_container(node, resolve=True)
    value = _declared_shape(json.dumps(spec, sort_keys=True))[name]
    if value is None:
        raise ValueError(
            f"{spec['_target_']} declares no `{name}`: a backbone or neck states its shape as attributes "
            f"`out_channels` (list[int], or int for all levels) and `strides` (list[int]) of the built module"
        )
    return value


def _out_channels(node: object) -> ListConfig | int:
    channels = _shape(node, "out_channels")
    # A ListConfig (not a list) so that OmegaConf.resolve, used by `--cfg job --resolve`, accepts it.
    return int(channels) if isinstance(channels, int) else ListConfig([int(c) for c in channels])


def _strides(node: object, max_stride: int | None = None) -> ListConfig:
    strides = [int(s) for s in _shape(node, "strides")]
    return ListConfig([s for s in strides if max_stride is None or s <= max_stride])


def _merge(node: object, *overrides: Any) -> DictConfig:
    if not isinstance(node, DictConfig):
        raise ValueError(f"${{lightdet.merge:...}} merges onto a config node, got {node!r}")
    merged = OmegaConf.create(OmegaConf.to_container(node, resolve=True))
    OmegaConf.set_struct(merged, True)  # a misspelt key fails, naming the key
    return OmegaConf.merge(merged, *overrides)


def _stored_resnet_channels(depth: int, out_indices: Any) -> ListConfig:
    """The ResNet-only resolver of configs stored in checkpoints before parts declared their shape."""
    from lightdet.models.backbones.resnet import resnet_out_channels

    return ListConfig(resnet_out_channels(int(depth), [int(i) for i in out_indices]))


def register_resolvers() -> None:
    """Registers lightdet's resolvers once per process (safe to call repeatedly)."""
    resolvers = {
        "lightdet.num_classes": _num_classes,
        "lightdet.out_channels": _out_channels,
        "lightdet.strides": _strides,
        "lightdet.merge": _merge,
        # not used by the shipped configs: older checkpoints' stored configs still name it
        "lightdet.resnet_channels": _stored_resnet_channels,
    }
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)

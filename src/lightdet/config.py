"""Config helpers shared by the command-line tools and the Python API.

The custom OmegaConf resolvers registered here let one value be derived from another instead of being
copied (DESIGN.md section 4):

* ``${lightdet.num_classes:${dataset.classes}}``: the number of classes of a ``classes`` entry (a list,
  a bare name or a path to ``classes.txt``), so ``num_classes`` reaches every head by interpolation.
* ``${lightdet.resnet_channels:${model.backbone.depth},${model.backbone.out_indices}}``: the channels of
  the ResNet stages a backbone returns, so a neck follows a ``model/backbone=...`` swap.
"""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import ListConfig, OmegaConf

from lightdet.data.classes import load_class_names


def _num_classes(classes: object) -> int:
    return len(load_class_names(classes))  # type: ignore[arg-type]


def _resnet_channels(depth: int, out_indices: Sequence[int]) -> ListConfig:
    from lightdet.models.backbones.resnet import resnet_out_channels

    # A ListConfig (not a list) so that OmegaConf.resolve, used by `--cfg job --resolve`, accepts it.
    return ListConfig(resnet_out_channels(int(depth), [int(i) for i in out_indices]))


def register_resolvers() -> None:
    """Registers lightdet's resolvers once per process (safe to call repeatedly)."""
    for name, fn in (("lightdet.num_classes", _num_classes), ("lightdet.resnet_channels", _resnet_channels)):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)

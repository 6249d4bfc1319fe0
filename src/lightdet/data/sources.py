"""The dataset protocol of the tools: which annotation files a dataset reads, and how to read them as COCO.

``lightdet-data check``, ``lightdet-data convert dataset2coco`` and :class:`CocoGroundTruth` (an
evaluator's ground truth) work on a dataset **node**, ``_target_`` plus constructor arguments as Hydra
composes them, without building the dataset: building parses and validates every file and stops at the
first error, where ``check`` wants to report them all. They ask the ``_target_`` class::

    @classmethod
    def annotation_sources(cls, <its constructor arguments>, **_) -> list[AnnotationSource]: ...

It is called with the node's arguments (a wrapper's nested datasets as nodes, plain mappings); it names
the files and does not read them, except that a generated dataset may generate itself there.
``AnnotationSource.read_coco()`` reads one file as COCO. Every lightdet dataset, wrapper included,
implements it; so does a user's own class, which is how it joins the tools (tutorial 2).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from lightdet.categories import ClassesSpec

__all__ = ["AnnotationSource", "BoxFormat", "CocoGroundTruth", "annotation_sources", "locate", "read_ground_truth"]

BoxFormat = Literal["xywh", "xyxy"]

_HYDRA_KEYS = ("_target_", "_recursive_", "_convert_", "_partial_", "_args_")


@dataclass(frozen=True)
class AnnotationSource:
    """One annotation file of a dataset and how to read it as COCO.

    Attributes:
        ann_file: the file (named in reports and messages).
        img_dir: the folder that the COCO ``images[].file_name`` are relative to; None when unknown (the
            image files are then not checked).
        classes: the configured classes as given (a list, one name or a ``classes.txt`` path); None:
            the file's own.
        read_coco: reads the file into a COCO dict (``images``, ``annotations`` with ``bbox`` as xywh
            pixels and ``iscrowd`` for boxes to ignore, ``categories``) that keeps the file's values:
            nothing clipped, dropped or remapped, so that ``check`` can report them.
        box_format: how the file itself writes boxes; ``check`` tells boxes written in the other
            convention by it.
    """

    ann_file: str
    img_dir: str | None
    classes: ClassesSpec | None
    read_coco: Callable[[], dict[str, Any]]
    box_format: BoxFormat = "xywh"


def locate(target: Any) -> Any:
    """The object a ``_target_`` names (``"package.module.Name"``); an object is returned as is."""
    if not isinstance(target, str):
        return target
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:cut])
        try:
            obj = importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name is not None and (module + ".").startswith(err.name + "."):
                continue  # not a module: the name is an attribute of a shorter one
            raise
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            break
        return obj
    raise ValueError(f"_target_ {target!r} cannot be imported (expected package.module.Name)")


def _plain(value: Any) -> Any:
    """Config containers -> dicts and lists (a composed node may hold OmegaConf containers)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [_plain(v) for v in value]
    return value


def annotation_sources(node: Mapping[str, Any]) -> list[AnnotationSource]:
    """The annotation files behind a dataset node, from its ``_target_``'s ``annotation_sources``.

    Raises:
        ValueError: when the ``_target_`` does not implement the protocol, naming it and the fallback.
    """
    node = _plain(node)
    target = node.get("_target_")
    method = getattr(locate(target), "annotation_sources", None) if target is not None else None
    if method is None:
        raise ValueError(
            f"cannot tell which annotation file a dataset of `_target_: {target}` reads: it has no "
            "`annotation_sources` classmethod (see docs/tutorials/2_custom_datasets.md). Check its "
            "annotation file directly: lightdet-data check PATH/TO/ann.json --img-dir PATH/TO/images"
        )
    kwargs = {k: v for k, v in node.items() if k not in _HYDRA_KEYS}
    return list(method(*node.get("_args_", []), **kwargs))


def read_ground_truth(node: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The COCO dict of a dataset node that reads one annotation file, and that file.

    Raises:
        ValueError: when the node reads several files (e.g. a ``ConcatDataset``), naming them.
    """
    sources = annotation_sources(node)
    if len(sources) != 1:
        files = [s.ann_file for s in sources]
        raise ValueError(
            f"a dataset of `_target_: {node.get('_target_')}` reads {len(files)} annotation files {files}; "
            "ground truth comes from one: evaluate (or convert) each dataset on its own"
        )
    return sources[0].read_coco(), sources[0].ann_file


class CocoGroundTruth:
    """A dataset node's ground truth as COCO, read when called: an evaluator's ``ann_file`` for a
    dataset that is not in COCO format (the evaluators never build a dataset).

    In a config, ``_recursive_: false`` keeps Hydra from building the dataset node::

        evaluator:
          _target_: lightdet.evaluation.VocEvaluator
          ann_file:
            _target_: lightdet.data.CocoGroundTruth
            _recursive_: false
            dataset: ${dataset.datamodule.val}

    Args:
        dataset: the dataset node (``_target_`` and its arguments).
    """

    def __init__(self, dataset: Mapping[str, Any]) -> None:
        self.dataset: dict[str, Any] = _plain(dataset)
        self.ann_file: str | None = None  # known once read

    def __call__(self) -> dict[str, Any]:
        coco, self.ann_file = read_ground_truth(self.dataset)
        return coco

    def __repr__(self) -> str:
        return f"CocoGroundTruth({self.dataset.get('_target_')}{': ' + self.ann_file if self.ann_file else ''})"

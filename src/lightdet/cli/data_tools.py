"""The config-aware plumbing of ``lightdet-data check / browse / stats`` (parsing lives in ``cli/data.py``).

A tool's positional arguments are an optional annotation file followed by Hydra overrides of
lightdet's ``train`` config (``dataset=coco paths.data_dir=/data model=faster_rcnn``); the config gives
the datasets, their classes and pipelines, and the model's anchor generator.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lightdet.cli._hydra import UsageError, check_overrides
from lightdet.composition import compose_config

__all__ = ["compose_train_config", "split_target", "find_anchor_generator"]


def split_target(args: Sequence[str]) -> tuple[str | None, list[str]]:
    """``[FILE] [OVERRIDES...]`` -> ``(file or None, overrides)``; a first argument without ``=`` is a file."""
    args = list(args)
    if args and "=" not in args[0]:
        if not Path(args[0]).exists():
            raise UsageError(f"{args[0]!r} does not exist (expected an annotation file or KEY=VALUE overrides)")
        return args[0], args[1:]
    return None, args


def compose_train_config(overrides: Sequence[str]) -> DictConfig:
    """lightdet's ``train`` config with ``overrides`` (a misspelt key names the nearest valid ones)."""
    from hydra.errors import HydraException

    try:
        return compose_config("train", overrides)
    except HydraException:
        check_overrides("train", list(overrides))
        raise


def split_node(cfg: DictConfig, split: str) -> dict[str, Any] | None:
    """The resolved ``dataset.datamodule.<split>`` node as a plain dict (None when the split is unset)."""
    node = cfg.dataset.datamodule.get(split)
    return None if node is None else OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]


def find_anchor_generator(cfg: DictConfig) -> tuple[Any | None, int]:
    """Builds the first ``anchor_generator`` under ``model`` and returns it with the padding divisor."""
    from hydra.utils import instantiate

    def search(node: Any) -> Any:
        if isinstance(node, DictConfig):
            if "anchor_generator" in node:
                return node.anchor_generator
            for key in node:
                found = search(node._get_node(key))
                if found is not None:
                    return found
        return None

    node = search(cfg.get("model"))
    divisor = int(OmegaConf.select(cfg, "model.preprocessor.size_divisor", default=32) or 32)
    return (instantiate(node) if node is not None else None), divisor


def dump_json(value: Any) -> str:
    return json.dumps(value, indent=2, default=str)

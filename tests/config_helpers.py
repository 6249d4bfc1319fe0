"""Helpers for tests that inspect composed configs."""

from __future__ import annotations

from typing import Any


def num_classes_nodes(node: Any, path: str = "") -> dict[str, int]:
    """Every ``num_classes`` value under ``node`` by its dotted path."""
    out = {}
    if isinstance(node, dict):
        for k, v in node.items():
            out |= {f"{path}.{k}": v} if k == "num_classes" else num_classes_nodes(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out |= num_classes_nodes(v, f"{path}.{i}")
    return out

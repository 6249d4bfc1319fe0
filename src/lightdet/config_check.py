"""Type-checks a composed config against the constructors it will call, before anything is built.

Every node with a ``_target_`` is compared with the target's signature: each value must fit the parameter's
type hint (``int``, ``float``, ``bool``, ``str``, paths, ``None``, ``Literal``, unions and sequences of
those; other hints are not checked). A wrong value is reported with the key the user wrote: an override
``dataset.batch_size=abc`` reaches ``DetDataModule(batch_size: int)`` through an interpolation, and the
message names ``dataset.batch_size``, the value and the expected type, instead of failing deep inside.
"""

from __future__ import annotations

import collections.abc
import inspect
import os
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

__all__ = ["ConfigTypeError", "TypeProblem", "check_config_types", "find_type_problems"]

_UNCHECKED = object()


class ConfigTypeError(TypeError):
    """Config values that do not fit the types their constructors declare; the message lists each one."""


@dataclass(frozen=True)
class TypeProblem:
    """One value that does not fit: ``key`` (as written, following interpolations), where it is used."""

    key: str
    value: Any
    expected: str
    used_as: tuple[str, ...]

    def __str__(self) -> str:
        via = [u for u in self.used_as if u != self.key]
        return f"{self.key}={self.value!r}: expected {self.expected}" + (f" (used as {', '.join(via)})" if via else "")


def _fits(value: Any, hint: Any) -> bool | object:
    """Whether ``value`` fits ``hint``; ``_UNCHECKED`` for hints this checker does not understand."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is inspect.Parameter.empty:
        return True
    if hint is type(None) or hint is None:
        return value is None
    if origin in (typing.Union, types.UnionType):
        verdicts = [_fits(value, a) for a in args]
        return True if any(v is True for v in verdicts) else (_UNCHECKED if _UNCHECKED in verdicts else False)
    if origin is typing.Literal:
        return value in args
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is os.PathLike or getattr(hint, "__name__", "") in ("Path", "PathLike"):
        return isinstance(value, str)
    if origin in (list, tuple, collections.abc.Sequence) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        item = args[0] if args and (origin is not tuple or len(args) == 2 and args[1] is Ellipsis) else None
        if item is None:
            return True if not args or origin is not tuple else _fits_tuple(value, args)
        verdicts = [_fits(v, item) for v in value]
        return False if False in verdicts else (_UNCHECKED if _UNCHECKED in verdicts else True)
    return _UNCHECKED


def _fits_tuple(value: Any, args: tuple[Any, ...]) -> bool | object:
    if len(value) != len(args):
        return False
    verdicts = [_fits(v, a) for v, a in zip(value, args)]
    return False if False in verdicts else (_UNCHECKED if _UNCHECKED in verdicts else True)


def _describe(hint: Any) -> str:
    text = str(hint).replace("typing.", "").replace("NoneType", "None")
    return text[len("<class '") : -2] if text.startswith("<class '") else text


def _hints(target: str) -> tuple[inspect.Signature, dict[str, Any]] | None:
    """The signature and resolved type hints of a ``_target_`` (None when it cannot be inspected)."""
    from hydra.utils import get_object

    try:
        obj = get_object(target)
        func = obj.__init__ if inspect.isclass(obj) else obj
        return inspect.signature(obj), typing.get_type_hints(func)
    except Exception:  # an unimportable target is reported by instantiate itself, with Hydra's message
        return None


def _source_key(cfg: DictConfig, path: str) -> str:
    """The key a value was written under: follows ``${a.b}`` interpolations back to ``a.b``."""
    for _ in range(8):
        parent, _, leaf = path.rpartition(".")
        node = (OmegaConf.select(cfg, parent) if parent else cfg)._get_node(leaf)  # type: ignore[union-attr]
        raw = node._value() if node is not None else None
        if not (isinstance(raw, str) and raw.startswith("${") and raw.endswith("}") and ":" not in raw):
            return path
        path = raw[2:-1]
    return path


def _children(node: DictConfig | ListConfig) -> Iterator[tuple[str, Any]]:
    keys = range(len(node)) if isinstance(node, ListConfig) else [k for k in node if k != "hydra"]
    for key in keys:
        yield str(key), node._get_node(key)  # type: ignore[arg-type]


def _target_nodes(node: Any, path: str = "") -> Iterator[tuple[str, DictConfig]]:
    """``(dotted path, node)`` of every ``_target_`` node, outside interpolations and the ``hydra`` node."""
    if isinstance(node, DictConfig) and not node._is_none() and "_target_" in node:
        yield path, node
    if isinstance(node, (DictConfig, ListConfig)) and not node._is_none() and not node._is_missing():
        for key, child in _children(node):
            if isinstance(child, (DictConfig, ListConfig)) and not child._is_interpolation():
                yield from _target_nodes(child, f"{path}.{key}" if path else key)


def find_type_problems(cfg: DictConfig) -> list[TypeProblem]:
    """Every value under a ``_target_`` node that does not fit its parameter's type hint, once per key."""
    found: dict[str, TypeProblem] = {}
    for p in _problems(cfg):
        seen = found.get(p.key)
        found[p.key] = p if seen is None else TypeProblem(p.key, p.value, seen.expected, seen.used_as + p.used_as)
    return list(found.values())


def _problems(cfg: DictConfig) -> Iterator[TypeProblem]:
    """Each (value, parameter) pair that does not fit."""
    for path, node in _target_nodes(cfg):
        found = _hints(str(node._get_node("_target_")._value()))
        if found is None:
            continue
        signature, hints = found
        for name in signature.parameters:
            if name not in node or name not in hints:
                continue
            child = node._get_node(name)
            if isinstance(child, DictConfig) or child._is_missing():
                continue
            key = f"{path}.{name}" if path else name
            try:
                value = node[name]
            except Exception:  # an interpolation that does not resolve: instantiate reports it
                continue
            if isinstance(value, (DictConfig, ListConfig)):
                value = OmegaConf.to_container(value, resolve=True)
            if _fits(value, hints[name]) is False:
                yield TypeProblem(_source_key(cfg, key), value, _describe(hints[name]), (key,))


def check_config_types(cfg: DictConfig) -> None:
    """Raises :class:`ConfigTypeError` listing every value that does not fit its constructor's types."""
    problems = find_type_problems(cfg)
    if problems:
        lines = "\n".join(f"  {p}" for p in problems)
        raise ConfigTypeError(f"config values of the wrong type:\n{lines}")

"""Shared plumbing of the Hydra command-line tools: the config directory, override checks, ``--cfg``.

Hydra reports a misspelt key as "Key 'x' is not in struct". Before Hydra runs, :func:`check_overrides`
composes the config the same way and, for a key that does not exist, names the nearest valid keys.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from omegaconf import DictConfig, ListConfig

from lightdet.config import register_resolvers

__all__ = ["CONF_DIR", "check_overrides", "prepare_argv", "UsageError"]

CONF_DIR: str = str(resources.files("lightdet.conf"))


class UsageError(SystemExit):
    """A command-line mistake: printed without a traceback, exit status 2."""

    def __init__(self, message: str) -> None:
        print(f"error: {message}", file=sys.stderr)
        super().__init__(2)


def _parse_args(argv: Sequence[str]):
    from hydra._internal.utils import get_args_parser

    return get_args_parser().parse_args(list(argv))


def _is_group_override(key: str) -> bool:
    """``model=x`` and ``model/backbone=y`` choose config files; ``model.x=1`` sets a value."""
    return "." not in key or "/" in key.split("@", 1)[0]


def _nearest_keys(cfg: DictConfig, dotted: str) -> tuple[str, list[str]]:
    """Returns the deepest existing parent of ``dotted`` and the keys closest to the missing part."""
    parts = dotted.split(".")
    node: object = cfg
    for depth, part in enumerate(parts):
        if isinstance(node, DictConfig) and part in node:
            node = node._get_node(part)  # no interpolation resolution needed to walk
            continue
        if isinstance(node, ListConfig) and part.lstrip("-").isdigit() and -len(node) <= int(part) < len(node):
            node = node._get_node(int(part))
            continue
        parent = ".".join(parts[:depth]) or "<root>"
        if not isinstance(node, DictConfig):
            return parent, []
        options = [str(k) for k in node]
        close = difflib.get_close_matches(part, options, n=4, cutoff=0.5)
        return parent, close or sorted(options)[:12]
    return dotted, []


def check_overrides(config_name: str, overrides: Sequence[str], config_dir: str | None = None) -> None:
    """Composes ``config_name`` with ``overrides`` and fails early with a helpful message.

    Raises:
        UsageError: a group option or key that does not exist (naming the nearest valid ones), or an
            override that does not parse.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as e:
        raise UsageError(str(e)) from None
    search = [f"hydra.searchpath=[file://{config_dir}]"] if config_dir else []
    group_overrides = search + [
        o.input_line
        for o in parsed
        if _is_group_override(o.key_or_group) or o.is_add() or o.key_or_group == "hydra.searchpath"
    ]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            try:
                base = compose(config_name, overrides=group_overrides)
            except HydraException as e:
                raise UsageError(str(e).strip()) from None
            for o in parsed:
                key = o.key_or_group
                if o.is_add() or o.is_delete() or _is_group_override(key) or key.startswith("hydra."):
                    continue
                parent, close = _nearest_keys(base, key)
                if parent != key:  # walked without resolving: an unresolvable interpolation still exists
                    hint = f"nearest valid keys under '{parent}': {', '.join(close)}" if close else ""
                    raise UsageError(
                        f"unknown config key '{key}' in override '{o.input_line}'. {hint}\n"
                        f"(use '+{o.input_line}' to add a new key on purpose; `--cfg job` prints the config)"
                    )
            try:
                compose(config_name, overrides=search + list(overrides))
            except HydraException as e:
                raise UsageError(str(e).strip()) from None
    finally:
        GlobalHydra.instance().clear()


def prepare_argv(config_name: str, argv: list[str]) -> list[str]:
    """Checks the overrides of a single run and makes ``--cfg`` print the resolved config.

    Returns the argument list to hand to Hydra (unchanged except for an added ``--resolve``).
    """
    register_resolvers()
    args = _parse_args(argv)
    if args.help or args.hydra_help or args.info:
        return argv
    if config_name == "test" and not any(o.split("=", 1)[0] == "ckpt" for o in args.overrides):
        raise UsageError("lightdet-test needs the checkpoint to evaluate: ckpt=PATH (see lightdet-test --help)")
    if not args.multirun and not args.experimental_rerun and not args.config_path:
        check_overrides(args.config_name or config_name, args.overrides, config_dir=_config_dir_arg(args))
    if args.cfg in ("job", "all") and not args.resolve:
        argv = [*argv, "--resolve"]
    return argv


def _config_dir_arg(args) -> str | None:
    """``--config-dir DIR`` adds a user directory to Hydra's search path; checks compose it the same way."""
    return None if not args.config_dir else str(Path(args.config_dir).resolve())

"""Shared plumbing of the Hydra command-line tools: running an app, override diagnosis, ``--cfg``.

Hydra composes the config once, in ``hydra.main``. Hydra reports a misspelt key as "Key 'x' is not in
struct"; when composition fails, :func:`run_app` asks :func:`check_overrides` which override is at fault
and names the nearest valid keys (the extra composition happens only on that error path).
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from omegaconf import DictConfig, ListConfig

from lightdet.composition import CONF_DIR, compose_config, hydra_context

__all__ = ["CONF_DIR", "check_overrides", "prepare_argv", "run_app", "UsageError"]


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
    from hydra import compose
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as e:
        raise UsageError(str(e)) from None
    group_overrides = [
        o.input_line
        for o in parsed
        if _is_group_override(o.key_or_group) or o.is_add() or o.key_or_group == "hydra.searchpath"
    ]
    with hydra_context(config_dir) as search:
        try:
            base = compose(config_name, overrides=[*search, *group_overrides])
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
        compose_config(config_name, overrides, config_dir=config_dir)
    except HydraException as e:
        raise UsageError(str(e).strip()) from None


def prepare_argv(config_name: str, argv: list[str]) -> list[str]:
    """Checks what can be checked without composing, and makes ``--cfg`` print the resolved config.

    Returns the argument list to hand to Hydra (unchanged except for an added ``--resolve``).
    """
    args = _parse_args(argv)
    if args.help or args.hydra_help or args.info:
        return argv
    if config_name == "test" and not any(o.split("=", 1)[0] == "ckpt" for o in args.overrides):
        raise UsageError("lightdet-test needs the checkpoint to evaluate: ckpt=PATH (see lightdet-test --help)")
    if args.multirun:  # a bad key would surface inside the sweeper as an unrelated error: check first
        for run in _single_runs(args.overrides):
            check_overrides(args.config_name or config_name, run, _config_dir_arg(args))
    if args.cfg in ("job", "all") and not args.resolve:
        argv = [*argv, "--resolve"]
    return argv


def run_app(app: Callable[[], object], config_name: str) -> None:
    """Runs a ``hydra.main`` app on ``sys.argv``; a composition error exits 2 naming the faulty override.

    Hydra's own exceptions are let through (``HYDRA_FULL_ERROR``) so that an override Hydra cannot
    apply is diagnosed here, with the nearest valid keys, instead of Hydra's "not in struct"; a value of
    the wrong type (:mod:`lightdet.config_check`) exits 2 as well.
    """
    from hydra.errors import ConfigCompositionException, OverrideParseException

    from lightdet.config_check import ConfigTypeError

    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        app()
    except ConfigTypeError as error:
        raise UsageError(str(error)) from None
    except (ConfigCompositionException, OverrideParseException) as error:
        args = _parse_args(sys.argv[1:])
        check_overrides(args.config_name or config_name, args.overrides, _config_dir_arg(args))
        raise UsageError(str(error).strip()) from None


def _single_runs(overrides: Sequence[str]) -> list[list[str]]:
    """Single-run override lists that together try every value of every choice sweep (``a=1,2``) once.

    Ranges and intervals (Optuna's search space) are left out; an override that does not parse is kept
    (and reported by :func:`check_overrides`).
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    parser = OverridesParser.create()
    fixed: list[str] = []
    choices: list[list[str]] = []
    for override in overrides:
        try:
            parsed = parser.parse_override(override)
        except HydraException:
            fixed.append(override)
            continue
        if not parsed.is_sweep_override():
            fixed.append(override)
        elif parsed.is_choice_sweep():
            key = parsed.get_key_element()
            choices.append([f"{key}={value}" for value in parsed.sweep_string_iterator()])
    first = [c[0] for c in choices]
    runs = [fixed + first]
    for i, values in enumerate(choices):
        runs += [fixed + first[:i] + [value] + first[i + 1 :] for value in values[1:]]
    return runs


def _config_dir_arg(args) -> str | None:
    """``--config-dir DIR`` adds a user directory to Hydra's search path; checks compose it the same way."""
    return None if not args.config_dir else str(Path(args.config_dir).resolve())

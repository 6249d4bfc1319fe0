"""What the tutorial tests share: a user's project written from a tutorial, and its composed configs."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from lightdet.cli._hydra import CONF_DIR, _parse_args
from lightdet.config import register_resolvers
from test_docs import _write_user_files  # the docs' own convention for user files


def forget_user_modules() -> None:
    """Drops ``my_project`` from ``sys.modules`` so another tutorial's version cannot shadow this one."""
    for name in [m for m in sys.modules if m == "my_project" or m.startswith("my_project.")]:
        del sys.modules[name]


def user_project(doc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Writes ``doc``'s ``my_project`` / ``my_configs`` files into ``tmp_path``: the cwd, importable."""
    _write_user_files(doc, tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    forget_user_modules()
    register_resolvers()
    yield tmp_path
    forget_user_modules()
    GlobalHydra.instance().clear()


def compose_command(command: str) -> DictConfig:
    """The ``train`` config a documented ``lightdet-train`` line composes (``--cfg job`` dropped)."""
    args = _parse_args(shlex.split(command)[1:])
    search = [f"hydra.searchpath=[file://{Path(args.config_dir).resolve()}]"] if args.config_dir else []
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("train", overrides=[*search, *args.overrides])

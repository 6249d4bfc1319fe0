"""The one way lightdet composes its Hydra configs: the CLIs, the Python API, the converters and the presets.

* :data:`CONF_DIR` is the packaged config directory (``lightdet/conf``).
* :func:`hydra_context` starts Hydra on it (plus an optional user directory) and restores Hydra's global
  state afterwards, so composing works inside a running ``lightdet-train`` as well as in a notebook.
* :func:`compose_config` composes a named primary config with overrides; :func:`compose` is the friendly
  form for notebooks and scripts (a model or experiment name, a run directory, no ``hydra`` node).
* :func:`config_from_container` turns a stored config (a checkpoint's) back into a ``DictConfig``.

Importing this module registers lightdet's resolvers (:mod:`lightdet.config`), so every config it returns
resolves, and ``hydra.main`` apps whose module imports it compose with them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from lightdet.config import register_resolvers

__all__ = ["CONF_DIR", "compose", "compose_config", "config_from_container", "hydra_context"]

#: The packaged config directory (``conf/`` in a checkout, ``lightdet/conf`` in the wheel).
CONF_DIR: str = str(resources.files("lightdet.conf"))

register_resolvers()


@contextmanager
def hydra_context(config_dir: str | Path | None = None) -> Iterator[list[str]]:
    """Starts Hydra on :data:`CONF_DIR`; yields the overrides that add ``config_dir`` to the search path.

    Hydra's global state is saved first and restored afterwards (``initialize_config_dir`` does that), so
    this nests inside a running Hydra app (``load_from=torchvision:...`` composes a preset mid-training).
    """
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.initialize import get_gh_backup, restore_gh_from_backup

    backup = get_gh_backup()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            yield [f"hydra.searchpath=[file://{Path(config_dir).resolve()}]"] if config_dir else []
    finally:
        restore_gh_from_backup(backup)


def compose_config(
    config_name: str | None = "train",
    overrides: Sequence[str] = (),
    *,
    config_dir: str | Path | None = None,
    return_hydra_config: bool = False,
) -> DictConfig:
    """``config_name`` (``train``, ``test``, ``infer``; None: only what ``overrides`` add) with ``overrides``.

    Raises:
        hydra.errors.HydraException: an override that does not parse or names a missing key or option.
    """
    from hydra import compose as hydra_compose

    with hydra_context(config_dir) as search:
        return hydra_compose(config_name, overrides=[*search, *overrides], return_hydra_config=return_hydra_config)


def config_from_container(container: Mapping[str, Any]) -> DictConfig:
    """A stored (unresolved) config, e.g. a checkpoint's, as a ``DictConfig`` whose resolvers are known."""
    return OmegaConf.create(dict(container))


def compose(
    name: str | None = None,
    overrides: Sequence[str] = (),
    *,
    config_name: str = "train",
    output_dir: str | Path | None = None,
    config_dir: str | Path | None = None,
) -> DictConfig:
    """Composes a lightdet config in Python, as the command line would, ready for :func:`train`.

    Args:
        name: a model (``conf/model/NAME.yaml``, as ``model=NAME``) or an experiment
            (``conf/experiment/NAME.yaml``, as ``experiment=NAME``); None: the config's defaults.
        overrides: Hydra overrides, as on the command line (``"dataset.classes=[circle,star]"``).
        config_name: ``"train"`` (``lightdet-train``) or ``"test"`` (``lightdet-test``, for :func:`evaluate`).
        output_dir: the run directory; None: ``<paths.output_root>/<name>/<timestamp>`` as Hydra makes it.
        config_dir: a directory of your own config files, added to the search path (``--config-dir``).

    Returns:
        the config, detached from Hydra: values that came from Hydra's runtime (``name``,
        ``paths.output_dir``) are filled in and the ``hydra`` node is removed; other interpolations remain,
        so ``cfg.dataset.classes = [...]`` still changes ``num_classes`` everywhere. Each call starts Hydra
        afresh, so it works any number of times in one process (a notebook kernel).
    """
    from hydra import compose as hydra_compose

    with hydra_context(config_dir) as search:
        chosen = _name_override(name) if name else []
        cfg = hydra_compose(config_name, overrides=[*search, *chosen, *overrides], return_hydra_config=True)
    return _detach_from_hydra(cfg, output_dir)


def _name_override(name: str) -> list[str]:
    from hydra.core.global_hydra import GlobalHydra

    loader = GlobalHydra.instance().config_loader()
    groups = {g: loader.get_group_options(g) for g in ("model", "experiment")}
    found = [g for g, options in groups.items() if name in options]
    if not found:
        raise ValueError(
            f"compose({name!r}): no such model or experiment; models: {', '.join(groups['model'])}; "
            f"experiments: {', '.join(groups['experiment'])}"
        )
    return [f"{found[-1]}={name}"]


def _detach_from_hydra(cfg: DictConfig, output_dir: str | Path | None) -> DictConfig:
    """Fills in the ``${hydra:...}`` values (the run directory first) and drops the ``hydra`` node."""
    import copy

    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    holder = HydraConfig.instance()
    previous = holder.cfg
    try:
        if output_dir is None:
            probe = copy.deepcopy(cfg)
            with open_dict(probe):
                probe.hydra.runtime.output_dir = "."  # run.dir does not depend on it
            holder.set_config(probe)
            output_dir = str(probe.hydra.run.dir)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(Path(output_dir).absolute())
        holder.set_config(cfg)
        for path in _hydra_dependent(OmegaConf.to_container(cfg, resolve=False), ()):
            parent = OmegaConf.select(cfg, ".".join(map(str, path[:-1]))) if len(path) > 1 else cfg
            parent[path[-1]] = parent[path[-1]]  # reading resolves it while Hydra's config is set
    finally:
        holder.cfg = previous
    OmegaConf.set_readonly(cfg.hydra, False)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def _hydra_dependent(node: Any, path: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """Paths (outside ``hydra``) of the string values that interpolate ``${hydra:...}``."""
    if isinstance(node, dict):
        items = [(k, v) for k, v in node.items() if path or k != "hydra"]
    elif isinstance(node, list):
        items = list(enumerate(node))
    else:
        return [path] if isinstance(node, str) and "${hydra:" in node else []
    return [p for k, v in items for p in _hydra_dependent(v, (*path, k))]

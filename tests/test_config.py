"""Config composition: every option of every group composes and resolves; the CLI contract keys exist."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from config_helpers import num_classes_nodes
from lightdet.cli._hydra import CONF_DIR

CONF = Path(CONF_DIR)
SKIP_GROUPS = {"hydra"}


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def _group_options() -> list[tuple[str, str]]:
    pairs = []
    for d in sorted(p for p in CONF.rglob("*") if p.is_dir() and p.name != "__pycache__"):
        group = d.relative_to(CONF).as_posix()
        if group.split("/")[0] in SKIP_GROUPS or not _options(group):
            continue
        pairs += [(group, opt) for opt in _options(group)]
    return pairs


@functools.cache
def _model_choices() -> dict[str, dict[str, str]]:
    """Each model's Hydra choices: a part by its group (``model/backbone``), a block used at several places
    by group and package (``model/assigner@model.rpn_head.assigner``), each with the option it takes."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        choices = {
            m: dict(compose("train", [f"model={m}"], return_hydra_config=True).hydra.runtime.choices)
            for m in ["faster_rcnn", "retinanet", *_options("model")]
        }
    GlobalHydra.instance().clear()
    return choices


def _with_parent(group: str, option: str) -> list[str]:
    """A nested option is chosen inside a parent that includes it (model/backbone inside faster_rcnn; a block
    such as model/assigner at a package a model uses it at, preferably one where that option is used)."""
    parents = {"model/bbox_head": "model=retinanet", "model": "model=faster_rcnn", "dataset": "dataset=coco"}
    top = group.split("/")[0]
    parent = parents.get(group, parents.get(top))
    if top == "model" and "/" in group and group not in _model_choices()[parent.split("=")[1]]:
        uses = [(m, key, chosen) for m, keys in _model_choices().items() for key, chosen in keys.items()]
        uses = [u for u in uses if u[1].split("@")[0] == group]
        model, key, _ = next((u for u in uses if u[2] == option), uses[0])
        return [f"model={model}", f"{key}={option}"]
    prefix = [parent] if "/" in group and parent else []
    return [*prefix, f"{group}={option}"]


@pytest.mark.parametrize(("group", "option"), _group_options())
def test_every_group_option_composes_and_resolves(compose_cfg, group: str, option: str) -> None:
    cfg = compose_cfg(_with_parent(group, option))
    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    if group.startswith(("model", "dataset")):
        heads = num_classes_nodes(container["model"])
        assert heads and set(heads.values()) == {container["dataset"]["num_classes"]}, heads


def test_coco_1x_contract(compose_cfg) -> None:
    cfg = compose_cfg(["model=faster_rcnn", "dataset=coco", "schedule=1x"])
    assert cfg.dataset.num_classes == 80
    assert cfg.schedule.max_epochs == 12 and list(cfg.schedule.policy.milestones) == [8, 11]
    assert cfg.trainer.max_epochs == 12
    assert cfg.model.roi_head.bbox_head.num_classes == 80


def test_classes_subset_flows_to_the_model(compose_cfg) -> None:
    cfg = compose_cfg(["dataset=coco", "dataset.classes=[person,car]", "model=faster_rcnn"])
    assert cfg.model.roi_head.bbox_head.num_classes == 2


def test_trainer_keys_need_no_plus(compose_cfg) -> None:
    keys = [
        "max_epochs", "max_steps", "limit_train_batches", "limit_val_batches", "fast_dev_run",
        "accelerator", "devices", "num_nodes", "precision", "strategy", "accumulate_grad_batches",
        "gradient_clip_val", "check_val_every_n_epoch", "log_every_n_steps", "deterministic",
    ]
    cfg = compose_cfg([f"trainer.{k}={v}" for k, v in [("max_steps", 3), ("precision", "bf16-mixed")]])
    assert all(k in cfg.trainer for k in keys)
    assert cfg.trainer.max_steps == 3 and cfg.paths.data_dir.endswith("data")


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_every_experiment_composes(compose_cfg, experiment: str) -> None:
    cfg = compose_cfg([f"experiment={experiment}"])
    OmegaConf.to_container(cfg, resolve=True)
    assert cfg.name == experiment


def _flat(node, prefix: str = "") -> dict[str, object]:
    if isinstance(node, dict):
        out: dict[str, object] = {}
        for k, v in node.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): node}


def test_bounded_iou_experiment_differs_only_by_its_loss(compose_cfg) -> None:
    base = _flat(OmegaConf.to_container(compose_cfg(["experiment=faster_rcnn_r50_fpn_1x_coco"])))
    bounded = _flat(OmegaConf.to_container(compose_cfg(["experiment=faster_rcnn_r50_fpn_bounded_iou_1x_coco"])))
    changed = {k for k in base.keys() | bounded.keys() if base.get(k) != bounded.get(k) and not k.startswith("hydra")}
    loss = "model.roi_head.bbox_head.loss_bbox."
    assert changed == {"name", f"{loss}_target_", f"{loss}beta", f"{loss}eps", f"{loss}loss_weight"}
    assert bounded[f"{loss}_target_"] == "lightdet.models.BoundedIoULoss" and bounded[f"{loss}loss_weight"] == 10.0

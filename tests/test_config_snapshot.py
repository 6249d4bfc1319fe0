"""Every model and experiment config resolves to the same values as the pinned snapshot, key by key.

The snapshot (``tests/fixtures/config_snapshot.json``, written by ``scripts/config_snapshot.py``) was
taken before the yaml files were rewritten around shared blocks and templates; a rewrite must build the
same models. ``ALLOWED`` lists the keys that may differ, each with the reason.
"""

from __future__ import annotations

import importlib.util
import json
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("config_snapshot", ROOT / "scripts" / "config_snapshot.py")
config_snapshot = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(config_snapshot)  # type: ignore[union-attr]

SNAPSHOT: dict[str, Any] = json.loads(config_snapshot.SNAPSHOT.read_text())

# key patterns (fnmatch over dotted paths) that may be added, removed or changed, and why
ALLOWED: dict[str, str] = {
    # parts declare their shape (conf/model): the FPN is told its inputs' strides to declare its own
    "model.neck.in_strides": "the backbone's declared strides, read by the FPN to declare its output strides",
    "module.detector.neck.in_strides": "interpolates ${model}: as model.neck.in_strides",
    "cascade_stage": "Cascade R-CNN's stage template (not built itself): every model.roi_head.stages entry is it "
    "with the stage's IoU, stds and loss weight, the values checked key by key there",
    # the moved values are checked key by key in tests/engine/test_engine_configs.py
    "schedule.policy": "the decay policy is a _target_ object (StepDecay / CosineDecay), not a string",
    "schedule.milestones": "moved into schedule.policy (a StepDecay argument), same value",
    "schedule.gamma": "moved into schedule.policy (a StepDecay argument), same value",
    "schedule.min_lr_ratio": "moved into schedule.policy (a StepDecay / CosineDecay argument), same value",
    "module.scheduler.policy": "interpolates ${schedule}: as schedule.policy",
    "module.scheduler.milestones": "interpolates ${schedule}: as schedule.milestones",
    "module.scheduler.gamma": "interpolates ${schedule}: as schedule.gamma",
    "module.scheduler.min_lr_ratio": "interpolates ${schedule}: as schedule.min_lr_ratio",
    "module.paramwise._target_": "param-group rules are a built object (ParamGroupRules), same fields",
    "dataset.pipeline.test": "the shapes test pipeline caps the input size (Resize downscale_only)",
    "dataset.datamodule.*.pipeline": "interpolates dataset.pipeline.test",
    # image reading (issue 18): both new keys default to the behaviour before them
    "dataset.exif": "new key: EXIF orientation, ignore (the stored pixels, as before) or apply",
    "dataset.on_bad_image": "new key: an image that cannot be loaded stops the run (error, as before) or is skipped",
    "dataset.pipeline.*.exif": "LoadImage's exif argument, interpolating dataset.exif",
    "dataset.datamodule.*.exif": "interpolates dataset.pipeline: as dataset.pipeline.*.exif",
    "dataset.datamodule.*.on_bad_image": "each dataset's on_bad_image argument, interpolating dataset.on_bad_image",
    "*.evaluator.backend": "hotcoco is the default backend (COCOeval's numbers, parity-tested)",
    "*.evaluator.protocol": "the evaluation protocol is selectable (coco, lvis, oid); coco as before",
    "logger.*._target_": "lightdet's CSV/TensorBoard loggers: Lightning's, continuing the history on resume",
    "dataset.datamodule.train._target_": "shapes: the class ShapesDataset (states its files to the tools), "
    "was its alias shapes_dataset; same arguments",
    "dataset.datamodule.val._target_": "as dataset.datamodule.train._target_",
    "callbacks.run_report*": "the run report (plots/) is a default callback",
    "callbacks.val_images*": "predictions on validation images, logged to TensorBoard, are a default callback",
    "module.optimize_inference": "new key: evaluation runs a copy with BatchNorm folded and channels-last "
    "weights (the same detections, parity-tested); true",
    # dataset caching and the worker-count rule (lightdet.data.image_cache, lightdet.data.workers)
    "dataset.cache": "new key: decoded images kept for the run, null (decode on every load, as before), ram or disk",
    "dataset.datamodule.*.cache": "each dataset's cache argument, interpolating dataset.cache",
    "dataset.num_workers": "auto: max(0, min(8, usable CPUs // devices - 1)) per training process, was 2",
    "dataset.datamodule.num_workers": "interpolates dataset.num_workers",
}


def differences(old: Any, new: Any, path: str = "") -> list[str]:
    """Dotted paths where ``old`` and ``new`` differ (a missing key counts as a difference)."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new), key=str)
        out: list[str] = []
        for k in keys:
            sub = f"{path}.{k}" if path else str(k)
            if k not in old or k not in new:
                out.append(sub)
            else:
                out.extend(differences(old[k], new[k], sub))
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [p for i, (a, b) in enumerate(zip(old, new)) for p in differences(a, b, f"{path}.{i}")]
    return [] if old == new and type(old) is type(new) else [path]


def unexplained(diffs: list[str]) -> list[str]:
    return [d for d in diffs if not any(fnmatch(d, pattern) for pattern in ALLOWED)]


def test_differences_finds_changed_added_and_retyped_values():
    old = {"a": {"b": [1, 2], "c": 1.0}, "d": "x"}
    new = {"a": {"b": [1, 3], "c": 1}, "e": "x"}
    assert differences(old, new) == ["a.b.1", "a.c", "d", "e"]


def test_every_snapshot_config_still_exists():
    """A config may be added after the snapshot, never silently removed or renamed."""
    now = {f"{g}={n}" for g, n in config_snapshot.config_names()}
    assert sorted(set(SNAPSHOT) - now) == []


@pytest.mark.parametrize("key", sorted(SNAPSHOT))
def test_config_resolves_as_before(key: str):
    group, name = key.split("=", 1)
    diffs = differences(SNAPSHOT[key], config_snapshot.resolved(group, name))
    assert not unexplained(diffs), f"{key}: values changed at {unexplained(diffs)[:20]}"

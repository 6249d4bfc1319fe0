"""Resume resolution and override merging of lightdet.api (no training here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from lightdet.api import _resume_path, find_resume_checkpoint, merge_overrides


def _touch(path: Path, mtime: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    os.utime(path, (mtime, mtime))
    return path


def test_find_resume_checkpoint_prefers_last_then_newest(tmp_path: Path) -> None:
    assert find_resume_checkpoint(tmp_path) is None
    _touch(tmp_path / "checkpoints" / "epoch00.ckpt", 100)
    newest = _touch(tmp_path / "checkpoints" / "epoch01.ckpt", 200)
    assert find_resume_checkpoint(tmp_path) == newest
    last = _touch(tmp_path / "checkpoints" / "last.ckpt", 50)
    assert find_resume_checkpoint(tmp_path) == last


def _cfg(tmp_path: Path, **keys) -> OmegaConf:
    return OmegaConf.create({"paths": {"output_dir": str(tmp_path / "run")}, "ckpt_path": None, "resume": None, **keys})


def test_resume_modes(tmp_path: Path) -> None:
    old_run = tmp_path / "old"
    last = _touch(old_run / "checkpoints" / "last.ckpt", 1)
    assert _resume_path(_cfg(tmp_path)) is None
    assert _resume_path(_cfg(tmp_path, resume=str(old_run))) == str(last)
    assert _resume_path(_cfg(tmp_path, resume="auto")) is None  # nothing in this run dir yet: fresh start
    _touch(tmp_path / "run" / "checkpoints" / "last.ckpt", 1)
    assert _resume_path(_cfg(tmp_path, resume="auto")) == str(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert _resume_path(_cfg(tmp_path, ckpt_path=str(last), resume="auto")) == str(last)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"ckpt_path": "missing.ckpt"}, "no such checkpoint file"),
        ({"resume": "no_such_dir"}, "no such run directory"),
    ],
)
def test_resume_errors_name_the_path(tmp_path: Path, keys: dict, message: str) -> None:
    with pytest.raises(FileNotFoundError, match=message):
        _resume_path(_cfg(tmp_path, **keys))


def test_resume_dir_without_checkpoints_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no checkpoint under"):
        _resume_path(_cfg(tmp_path, resume=str(tmp_path / "empty")))


def test_merge_overrides_replaces_only_what_was_overridden() -> None:
    stored = OmegaConf.create(
        {"dataset": {"name": "shapes", "batch_size": 8}, "model": {"backbone": {"depth": 18}, "w": 1}}
    )
    composed = OmegaConf.create(
        {"dataset": {"name": "coco", "batch_size": 2}, "model": {"backbone": {"depth": 101}, "w": 5}}
    )
    merged = merge_overrides(stored, composed, ["model/backbone=resnet101", "dataset.batch_size=2"])
    assert merged.model.backbone.depth == 101 and merged.model.w == 1
    assert merged.dataset.batch_size == 2 and merged.dataset.name == "shapes"
    whole = merge_overrides(stored, composed, ["dataset=coco"])
    assert whole.dataset.name == "coco" and whole.model.backbone.depth == 18


def test_merge_overrides_deletes_and_rejects_experiments() -> None:
    stored = OmegaConf.create({"dataset": {"evaluator": {"x": 1}, "name": "shapes"}})
    merged = merge_overrides(stored, OmegaConf.create({"dataset": {"name": "shapes"}}), ["~dataset.evaluator"])
    assert "evaluator" not in merged.dataset and merged.dataset.name == "shapes"
    with pytest.raises(ValueError, match="experiment"):
        merge_overrides(stored, stored, ["experiment=faster_rcnn_r50_fpn_1x_coco"])


def test_compose_repeatedly_detached_from_hydra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    from lightdet.api import compose

    monkeypatch.chdir(tmp_path)
    first = compose(overrides=["dataset.classes=[circle,star]"])
    second = compose("faster_rcnn_r50_fpn_1x_coco", output_dir=tmp_path / "given")
    third = compose("faster_rcnn", ["schedule=2x"])
    assert "hydra" not in first and first.name == "faster_rcnn_small_quickstart_shapes"
    run_dir = Path(first.paths.output_dir)
    assert run_dir.parent == tmp_path / "outputs" / first.name and re.fullmatch(r"[\d_-]+", run_dir.name)
    assert second.paths.output_dir == str(tmp_path / "given") and second.dataset.num_classes == 80
    assert third.name == "faster_rcnn_2x_shapes" and third.model.backbone.depth == 50
    # an earlier config keeps its values after later compositions, and interpolations stay live
    assert first.dataset.num_classes == 2 and first.paths.output_dir == str(run_dir)
    first.dataset.classes = ["circle", "square", "star"]
    assert first.model.roi_head.bbox_head.num_classes == 3
    OmegaConf.to_container(third, resolve=True)  # nothing left that needs Hydra's runtime


def test_compose_unknown_name_lists_models_and_experiments() -> None:
    from lightdet.api import compose

    with pytest.raises(ValueError, match="faster_rcnn_small.*experiments: .*faster_rcnn_r50_fpn_1x_coco"):
        compose("fastr_rcnn")


def test_compose_test_config_and_top_level_exports(tmp_path: Path) -> None:
    import lightdet

    cfg = lightdet.compose(config_name="test", overrides=["ckpt=model.ckpt"], output_dir=tmp_path)
    assert cfg.ckpt == "model.ckpt" and cfg.name == "test_shapes" and cfg.paths.output_dir == str(tmp_path)
    assert {"compose", "train", "evaluate", "Predictor", "load_weights"} <= set(lightdet.__all__)
    from lightdet.api import train

    assert lightdet.train is train


def test_the_old_name_of_the_predictor_keeps_working_with_a_deprecation_warning():
    import lightdet
    from lightdet.inference import Predictor

    with pytest.warns(DeprecationWarning, match="lightdet.Predictor"):
        assert lightdet.Detector is Predictor
    assert "Detector" not in lightdet.__all__


def test_several_cpu_devices_warn_how_many_cores_they_share(caplog):
    from omegaconf import OmegaConf

    from lightdet.api import _warn_cpu_processes

    with caplog.at_level("WARNING", logger="lightdet.api"):
        _warn_cpu_processes(OmegaConf.create({"accelerator": "cpu", "devices": 4}))
        _warn_cpu_processes(OmegaConf.create({"accelerator": "cpu", "devices": 1}))
    assert len(caplog.records) == 1
    assert "trainer.devices=4 on the CPU starts 4 training processes sharing this machine's" in caplog.text

"""One composition path: the CLIs, the API, the converters and the presets share ``lightdet.composition``."""

from __future__ import annotations

import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from lightdet.composition import CONF_DIR, compose_config, config_from_container, hydra_context


def test_compose_config_applies_overrides_and_resolves_lightdet_interpolations():
    cfg = compose_config("train", ["dataset.classes=[a,b]", "model=retinanet_small"])
    assert cfg.model._target_ == "lightdet.models.SingleStageDetector"
    assert cfg.dataset.num_classes == 2


def test_hydra_context_restores_an_enclosing_hydra():
    """A preset composed mid-training (``load_from=torchvision:...``) must not tear down the app's Hydra."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        compose_config(None, ["+model=faster_rcnn", "+dataset.num_classes=3"])
        assert GlobalHydra.instance().hydra is not None and GlobalHydra.instance().is_initialized()
        assert compose("train").seed == 42
    assert not GlobalHydra.instance().is_initialized()


def test_hydra_context_adds_a_user_config_dir(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "mine.yaml").write_text("defaults:\n  - faster_rcnn_small\n  - _self_\nneck:\n  out_channels: 64\n")
    with hydra_context(tmp_path) as search:
        cfg = compose("train", overrides=[*search, "model=mine"])
    assert cfg.model.neck.out_channels == 64


def test_stored_config_resolves_lightdet_interpolations():
    stored = config_from_container({"dataset": {"classes": ["a", "b", "c"], "n": "${lightdet.num_classes:${dataset.classes}}"}})
    assert stored.dataset.n == 3


def test_a_training_composes_its_config_once(monkeypatch, tmp_path, capsys):
    """``lightdet-train`` composes in ``hydra.main`` only; overrides are diagnosed only when that fails."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    from lightdet.cli import train

    calls: list[str] = []
    original = ConfigLoaderImpl.load_configuration

    def counting(self, config_name, *args, **kwargs):
        calls.append(config_name)
        return original(self, config_name, *args, **kwargs)

    monkeypatch.setattr(ConfigLoaderImpl, "load_configuration", counting)
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")  # run_app sets it; monkeypatch restores it afterwards
    monkeypatch.setattr(sys, "argv", ["lightdet-train", f"hydra.run.dir={tmp_path}", "optimizer.lr=0.01", "--cfg", "job"])
    train.main()
    assert "lr: 0.01" in capsys.readouterr().out
    assert calls == ["train"]


def test_a_bad_key_is_named_with_its_nearest_valid_keys(monkeypatch, tmp_path, capsys):
    from lightdet.cli import train

    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    monkeypatch.setattr(sys, "argv", ["lightdet-train", f"hydra.run.dir={tmp_path}", "optimizer.lrr=0.01"])
    with pytest.raises(SystemExit) as exit_info:
        train.main()
    assert exit_info.value.code == 2
    assert "nearest valid keys under 'optimizer': lr" in capsys.readouterr().err


def test_every_value_of_a_sweep_is_checked_before_the_sweep_starts(monkeypatch, capsys):
    from lightdet.cli import train

    monkeypatch.setattr(sys, "argv", ["lightdet-train", "-m", "model=faster_rcnn_small,no_such_model"])
    with pytest.raises(SystemExit) as exit_info:
        train.main()
    assert exit_info.value.code == 2
    assert "no_such_model" in capsys.readouterr().err


def test_configs_stored_by_older_checkpoints_still_resolve():
    stored = config_from_container({
        "model": {"backbone": {"depth": 50, "out_indices": [0, 1, 2, 3]},
                  "neck": {"in_channels": "${lightdet.resnet_channels:${model.backbone.depth},${model.backbone.out_indices}}"}},
    })  # fmt: skip
    assert list(stored.model.neck.in_channels) == [256, 512, 1024, 2048]

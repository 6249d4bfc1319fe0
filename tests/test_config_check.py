"""Config values are type-checked against their constructors before anything is built."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Literal

import pytest
from omegaconf import OmegaConf

from lightdet.composition import compose
from lightdet.config_check import ConfigTypeError, _fits, check_config_types, find_type_problems


class Part:
    def __init__(
        self, size: int, ratio: float = 1.0, mode: Literal["a", "b"] = "a", sizes: Sequence[int] = (),
        pair: tuple[int, int] | None = None, flag: bool = False, anything: object = None,
    ) -> None:  # fmt: skip
        self.size = size


@pytest.mark.parametrize(
    ("value", "hint", "verdict"),
    [
        (3, int, True), ("3", int, False), (True, int, False), (2, float, True), ("x", float, False),
        ("b", Literal["a", "b"], True), ("c", Literal["a", "b"], False), (None, int | None, True),
        ([1, 2], Sequence[int], True), ([1, "x"], Sequence[int], False), ([1, 2], tuple[int, int], True),
        ([1, 2, 3], tuple[int, int], False), ("x", Sequence[int], False), (1, bool, False),
    ],
)  # fmt: skip
def test_fits(value, hint, verdict):
    assert _fits(value, hint) is verdict


def test_unknown_hints_are_not_checked():
    assert _fits("anything", object) is not False


def test_a_wrong_value_is_named_by_the_key_it_was_written_under():
    cfg = OmegaConf.create({
        "n": "abc",
        "part": {"_target_": f"{__name__}.Part", "size": "${n}", "mode": "c", "sizes": [1, 2], "pair": [1, 2]},
    })  # fmt: skip
    problems = [str(p) for p in find_type_problems(cfg)]
    assert problems == ["n='abc': expected int (used as part.size)", "part.mode='c': expected Literal['a', 'b']"]
    with pytest.raises(ConfigTypeError, match="config values of the wrong type"):
        check_config_types(cfg)


def test_shipped_configs_have_no_type_problems():
    for name in ("faster_rcnn", "mask_rcnn_small", "retinanet", "fcos_small", "cascade_mask_rcnn"):
        assert find_type_problems(compose(name, ["paths.data_dir=/DATA"], output_dir="/tmp/out")) == []


def test_the_cli_exits_2_naming_the_key_value_and_type(monkeypatch, tmp_path, capsys):
    from lightdet.cli import train

    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    monkeypatch.setattr(sys, "argv", ["lightdet-train", f"hydra.run.dir={tmp_path}", "dataset.batch_size=abc"])
    with pytest.raises(SystemExit) as exit_info:
        train.main()
    assert exit_info.value.code == 2
    assert "dataset.batch_size='abc': expected int" in capsys.readouterr().err
    assert not (tmp_path / "config.yaml").exists()


def test_none_nodes_and_the_hydra_node_are_skipped():
    cfg = OmegaConf.create({"hydra": {"sweeper": {"params": None}}, "empty": None, "dict_none": {"a": None}})
    cfg.dict_none = None
    assert find_type_problems(cfg) == []

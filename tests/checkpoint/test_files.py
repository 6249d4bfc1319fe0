"""read_checkpoint / check_fits: every way a checkpoint file can be wrong is named, with the path."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from lightdet.checkpoint.files import CheckpointError, check_fits, describe_model, read_checkpoint


@pytest.fixture
def good(tmp_path):
    path = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"detector.w": torch.ones(2)}, "global_step": 3}, path)
    return path


def test_a_good_checkpoint_loads(good):
    assert read_checkpoint(good)["global_step"] == 3


def test_a_missing_file_and_a_directory_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"ckpt='.*nope.ckpt': no such checkpoint file"):
        read_checkpoint(tmp_path / "nope.ckpt")
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "last.ckpt").write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"is a directory.*its latest checkpoint is .*last.ckpt"):
        read_checkpoint(tmp_path / "run", role="ckpt_path")


def test_a_text_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("epoch 12: mAP 0.5\n")
    with pytest.raises(CheckpointError, match=r"ckpt='.*notes.txt' is not a PyTorch checkpoint: it is a text file \(starts with 'epoch 12"):
        read_checkpoint(path)


def test_an_empty_and_a_truncated_file(tmp_path, good):
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        read_checkpoint(empty)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(good.read_bytes()[: os.path.getsize(good) // 2])
    with pytest.raises(CheckpointError, match=r"load_from='.*cut.ckpt' is truncated: a zip archive of \d+ bytes"):
        read_checkpoint(cut, role="load_from")


def test_a_pickle_with_python_objects_is_refused_not_run(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "thing": nn.Linear(1, 1)}, path)
    with pytest.raises(CheckpointError, match="holds Python objects besides tensors"):
        read_checkpoint(path)


def test_a_checkpoint_of_another_architecture_names_both_and_the_differing_parts():
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 4))
    state = {"0.weight": torch.zeros(3, 2), "0.bias": torch.zeros(3), "1.weight": torch.zeros(5, 3), "2.weight": torch.zeros(1)}
    stored = {"_target_": "x.TwoStageDetector", "backbone": {"_target_": "x.ResNet", "depth": 18}}
    wanted = {"_target_": "x.TwoStageDetector", "backbone": {"_target_": "x.ResNet", "depth": 50}}
    with pytest.raises(CheckpointError) as err:
        check_fits(state, model, path="m.ckpt", stored=stored, wanted=wanted)
    message = str(err.value)
    assert "checkpoint of TwoStageDetector (backbone ResNet-18), while TwoStageDetector (backbone ResNet-50)" in message
    assert "only in the model: 1.bias (1 tensor)" in message
    assert "only in the checkpoint: 2.weight (1 tensor)" in message
    assert "other shape: 1.weight checkpoint (5, 3) vs model (4, 3)" in message
    assert len(message.splitlines()) == 5


def test_a_fitting_state_passes():
    model = nn.Linear(2, 3)
    check_fits(model.state_dict(), model, path="m.ckpt")


def test_describe_model_without_a_config():
    assert describe_model(None) == "an unknown architecture (no config stored)"

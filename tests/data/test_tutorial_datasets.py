"""docs/tutorials/2_custom_datasets.md, "Your own format": the tutorial's own ``CsvDataset`` code block,
written to a user's project outside lightdet, goes through the tutorial's ``lightdet-data`` lines and its
dataset config (datasets and evaluator). None of the user's code is repeated here."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
from format_helpers import CSV_TRAIN, CSV_VAL, write_csv
from hydra.utils import instantiate

from lightdet.cli.data import main as data_main
from lightdet.structures import Detections
from test_docs import _blocks, _commands
from tutorial_helpers import compose_command, user_project

DOC = Path(__file__).resolve().parents[2] / "docs" / "tutorials" / "2_custom_datasets.md"


def _own_format_lines() -> list[str]:
    """The tutorial's ``lightdet-data`` lines on ``dataset=my_csv`` (a ``text`` block: they need a project)."""
    return [ln.strip() for lang, body in _blocks(DOC) if lang == "text" for ln in body.splitlines()
            if ln.startswith("lightdet-data") and "dataset=my_csv" in ln]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The tutorial's ``my_project`` and ``my_configs`` in the working directory, with a small CSV dataset."""
    for project in user_project(DOC, tmp_path, monkeypatch):
        write_csv(project / "data" / "my_csv", CSV_TRAIN, images="images")
        write_csv(project / "data" / "my_csv", CSV_VAL, "val.csv", images="images")
        yield project


def test_the_data_tools_run_on_the_tutorial_s_class(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = _own_format_lines()
    assert [shlex.split(ln)[1] for ln in lines] == ["check", "browse", "stats", "convert"]
    for line in lines:
        assert data_main(shlex.split(line)[1:]) == 0, line
    out = capsys.readouterr().out
    assert re.search(r"0 error\(s\), 0 warning\(s\) in 2 file\(s\)", out) and "anchor coverage:" in out
    assert len(list((project / "browse_csv").glob("*.png"))) == 2
    val = json.loads((project / "my_csv_val.json").read_text())
    assert [c["name"] for c in val["categories"]] == ["cat", "dog", "bird"] and len(val["annotations"]) == 3


def test_the_tutorial_s_config_trains_and_evaluates(project: Path) -> None:
    (command,) = [c for c in _commands(DOC) if "dataset=my_csv" in c]
    cfg = compose_command(command)
    datamodule = instantiate(cfg.dataset.datamodule, num_workers=0)
    evaluator = instantiate(cfg.dataset.evaluator)
    assert next(iter(datamodule.train_dataloader())).images.shape[0] == 2
    for sample in datamodule.val:  # the ground truth, scaled back to the original image, as detections
        scale = sample.boxes.new_tensor(sample.meta.scale_factor * 2)
        det = Detections(sample.boxes / scale, sample.labels.new_ones(len(sample.labels)).float(), sample.labels)
        evaluator.process([det], [sample.meta])
    assert evaluator.compute().metrics["bbox_mAP"] == pytest.approx(1.0)

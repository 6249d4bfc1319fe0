"""lightdet's CSV/TensorBoard loggers keep a resumed run's history (Lightning's CSVLogger deletes it)."""

from __future__ import annotations

import csv

from lightdet.engine.loggers import CSVLogger, TensorBoardLogger, truncate_metrics_csv


def _rows(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def _log(logger, steps, key="train/loss"):
    for step in steps:
        logger.log_metrics({key: float(step)}, step=step)
    logger.save()


def test_a_resumed_logger_keeps_the_rows_before_the_resumed_step(tmp_path):
    first = CSVLogger(tmp_path, name="", version="")
    first.start_at(0)
    _log(first, range(6))
    # interrupted after step 5; the last checkpoint was written at global step 4: steps 4 and 5 are redone
    second = CSVLogger(tmp_path, name="", version="")
    second.start_at(4)
    _log(second, range(4, 8))
    _log(second, [8], key="val/bbox_mAP")  # a new column: the file is rewritten with the old rows
    rows = _rows(tmp_path / "metrics.csv")
    assert [int(r["step"]) for r in rows] == list(range(9))
    assert rows[0]["train/loss"] == "0.0" and rows[-1]["val/bbox_mAP"] == "8.0"


def test_a_fresh_run_in_a_used_directory_starts_an_empty_file(tmp_path):
    old = CSVLogger(tmp_path, name="", version="")
    _log(old, range(3))
    new = CSVLogger(tmp_path, name="", version="")
    new.start_at(0)
    _log(new, [0])
    assert [r["step"] for r in _rows(tmp_path / "metrics.csv")] == ["0"]


def test_truncate_metrics_csv_on_a_missing_file_does_nothing(tmp_path):
    assert truncate_metrics_csv(str(tmp_path / "metrics.csv"), 3) == 0
    assert not (tmp_path / "metrics.csv").exists()


def test_tensorboard_purges_the_redone_steps(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first = TensorBoardLogger(tmp_path, name="", version="")
    first.start_at(0)
    assert "purge_step" not in first._kwargs
    _log(first, range(6))
    first.experiment.close()
    second = TensorBoardLogger(tmp_path, name="", version="")
    second.start_at(4)
    _log(second, range(4, 8))
    second.experiment.close()
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == list(range(8))

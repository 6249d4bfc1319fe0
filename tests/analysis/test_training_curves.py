"""``results.png`` of a run: a panel per training series, validation metrics grouped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from lightdet.analysis.training import plot_training_curves, smooth, val_panels


def test_val_metrics_are_grouped_into_panels() -> None:
    keys = ["val/bbox_AR_100", "val/bbox_mAP", "val/bbox_mAP_50", "val/bbox_mAP_s", "val/segm_mAP", "val/other"]
    panels = dict(val_panels(keys))
    assert panels["val AP"] == ["val/bbox_mAP", "val/segm_mAP", "val/bbox_mAP_50"]
    assert panels["val AP by size"] == ["val/bbox_mAP_s"]
    assert panels["val AR"] == ["val/bbox_AR_100"]
    assert panels["val/other"] == ["val/other"]


def test_smoothing_skips_missing_values() -> None:
    out = smooth(np.array([1.0, np.nan, 1.0]), weight=0.5)
    assert np.allclose(out, [1.0, 1.0, 1.0])
    assert np.isnan(smooth(np.array([np.nan]))).all()


def test_results_png_has_every_series(tmp_path: Path) -> None:
    train = [{"step": s, "epoch": s // 5, "train/loss": 2.0 / (s + 1), "train/loss_cls": 1.0 / (s + 1),
              "train/lr": 0.01 * min(1, s / 4)} for s in range(10)]  # fmt: skip
    val = [{"step": 5 * e, "epoch": e, "val/bbox_mAP": 0.1 * e, "val/bbox_mAP_50": 0.2 * e} for e in range(2)]
    path = plot_training_curves(train, val, tmp_path / "results.png")
    with Image.open(path) as image:
        assert image.width > 1000 and np.asarray(image.convert("L")).std() > 5
    # nothing logged yet still writes a figure (a run validated before its first logged step)
    assert plot_training_curves([], [], tmp_path / "empty.png").is_file()

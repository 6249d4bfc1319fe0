"""Drawing samples, box statistics, bar charts and anchor coverage."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lightdet.data import CocoDataset
from lightdet.data.visualize import anchor_coverage, bar_chart, box_stats, browse, draw_sample
from lightdet.models import AnchorGenerator


def test_browse_draws_boxes_on_the_pipeline_output(tiny_shapes, tmp_path):
    ds = CocoDataset(tiny_shapes / "annotations" / "val.json", tiny_shapes / "val", with_mask=True)
    paths = browse(ds, tmp_path / "out", num=3, seed=None)
    assert [p.name.split("_")[0] for p in paths] == ["000", "001", "002"]
    for k, path in enumerate(paths):
        drawn = np.asarray(Image.open(path).convert("RGB"))
        source = ds[k].image.permute(1, 2, 0).numpy()
        assert drawn.shape == source.shape
        for x1, y1, x2, y2 in ds[k].boxes.round().int().tolist():
            inside = np.abs(drawn[y1:y2, x1:x2].astype(int) - source[y1:y2, x1:x2]).sum()
            assert inside > 0  # box outline / mask drawn inside every box
        assert (drawn != source).any(axis=-1).mean() < 0.9  # not a blank or repainted image


def test_draw_sample_without_boxes_returns_the_image(tiny_shapes):
    ds = CocoDataset(tiny_shapes / "annotations" / "val.json", tiny_shapes / "val", classes=["circle"])
    empty = next(i for i in range(len(ds)) if len(ds.get_record(i)) == 0)
    sample = ds[empty]
    assert torch.equal(draw_sample(sample, ds.class_names), sample.image)


def test_box_stats_and_bar_chart(tiny_shapes, tmp_path):
    ds = CocoDataset(tiny_shapes / "annotations" / "train.json", tiny_shapes / "train")
    stats = box_stats(ds.get_record(i) for i in range(len(ds)))
    assert stats.num_images == 12 and len(stats.labels) == sum(len(ds.get_record(i)) for i in range(12))
    assert (stats.sizes > 0).all() and (stats.aspect_ratios > 0).all()
    path = bar_chart([3, 0, 7], ["a", "b", "c"], "title", tmp_path / "chart.png")
    pixels = np.asarray(Image.open(path).convert("RGB"))
    assert pixels.shape == (360, 640, 3) and (pixels != 255).any(axis=-1).mean() > 0.05


def test_anchor_coverage_known_values():
    gen = AnchorGenerator(strides=[16], ratios=[1.0], scales=[2.0])  # 32x32 anchors centred on 0, 16, 32 ...
    exact = torch.tensor([[-16.0, -16, 16, 16], [16, 16, 48, 48]])  # equal to anchors
    small = torch.tensor([[0.0, 0, 8, 8]])  # IoU 64 / 1024 with the best anchor
    coverage, best = anchor_coverage([((64, 64), exact), ((64, 64), small)], gen, size_divisor=32)
    assert best.tolist() == pytest.approx([1.0, 1.0, 64 / 1024])
    assert coverage == pytest.approx(2 / 3)
    assert np.isnan(anchor_coverage([((32, 32), torch.zeros((0, 4)))], gen)[0])

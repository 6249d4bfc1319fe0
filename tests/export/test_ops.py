"""The export graphs' tensor pieces against the eager modules they stand in for."""

import torch

from lightdet.export.ops import multi_level_roi_align
from lightdet.models import MultiLevelRoIAlign


def pyramid() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(2, 4, 256 // s, 384 // s, generator=g) for s in (4, 8, 16, 32)]


def rois_over_levels() -> torch.Tensor:
    """RoIs of both images interleaved, their sizes cycling through every level (so that pooling level by
    level reorders them), and one size that only the last level takes."""
    sides = torch.tensor([20.0, 150.0, 60.0, 300.0, 30.0, 700.0, 120.0, 40.0, 250.0])
    x1 = torch.arange(len(sides), dtype=torch.float32) * 7
    boxes = torch.stack([x1, x1 / 2, x1 + sides, x1 / 2 + sides * 0.8], 1)
    batch = (torch.arange(len(sides)) % 2).float()
    return torch.cat([batch[:, None], boxes], 1)


def test_multi_level_roi_align_equals_the_eager_extractor_row_for_row() -> None:
    extractor = MultiLevelRoIAlign(7, [4, 8, 16, 32], sampling_ratio=0, aligned=True)
    feats, rois = pyramid(), rois_over_levels()
    levels = extractor.map_levels(rois)
    assert set(levels.tolist()) == {0, 1, 2, 3} and not torch.equal(levels, levels.sort().values)
    expected = extractor(feats, rois)
    assert torch.equal(multi_level_roi_align(extractor, feats, rois), expected)
    assert expected.abs().sum((1, 2, 3)).min() > 0  # every row was pooled, none left at zero


def test_multi_level_roi_align_with_no_rois_is_empty() -> None:
    extractor = MultiLevelRoIAlign(14, [4, 8, 16, 32])
    out = multi_level_roi_align(extractor, pyramid(), torch.zeros((0, 5)))
    assert out.shape == (0, 4, 14, 14)

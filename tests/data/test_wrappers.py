"""Dataset wrappers (repeat, class-balanced repeat, concat) and LVIS repeat factors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from format_helpers import middle_data, write_middle

from lightdet.data import ClassBalancedDataset, ConcatDataset, MiddleDataset, RepeatDataset, repeat_factors


@pytest.fixture
def middle(tmp_path):
    return MiddleDataset(write_middle(tmp_path), tmp_path / "img")


def test_repeat_length_and_indices(middle):
    ds = RepeatDataset(middle, times=3)
    assert len(ds) == 6 and ds.class_names == middle.class_names
    assert [ds.get_record(i).image_id for i in range(6)] == [3, 1] * 3
    np.testing.assert_array_equal(ds.aspect_ratios(), np.tile(middle.aspect_ratios(), 3))
    assert ds[5].meta.image_id == 1
    with pytest.raises(ValueError, match="times must be >= 1"):
        RepeatDataset(middle, 0)


def test_repeat_factors_on_a_known_distribution():
    # 10 images: class 0 in 9, class 1 in 1 (image 5), class 2 in 4 (images 0, 6, 7, 8), image 9 empty
    sets = [np.array([0])] * 5 + [np.array([0, 1]), np.array([0, 2]), np.array([0, 2]), np.array([2, 0]),
                                  np.array([], dtype=np.int64)]
    sets[0] = np.array([0, 2])
    f = repeat_factors(sets, oversample_thr=0.4)
    # thr 0.4: r_0 = 1, r_1 = sqrt(0.4 / 0.1) = 2, r_2 = sqrt(0.4 / 0.4) = 1
    expected = [1.0] * 5 + [2.0, 1.0, 1.0, 1.0, 1.0]
    np.testing.assert_allclose(f, expected)
    f = repeat_factors(sets, oversample_thr=0.9)
    assert f[5] == pytest.approx(3.0) and f[1] == pytest.approx(1.0)  # sqrt(0.9 / 0.1)
    assert f[0] == pytest.approx(math.sqrt(0.9 / 0.4)) and f[9] == 1.0
    with pytest.raises(ValueError, match="oversample_thr"):
        repeat_factors(sets, 0.0)


def test_class_balanced_dataset_repeats_rare_images(tmp_path):
    data = middle_data()
    data["images"] = [{"filename": f"{i}.jpg", "width": 8, "height": 8,
                       "ann": {"bboxes": [[0, 0, 4, 4]], "labels": [1 if i == 0 else 0]}} for i in range(4)]
    ds = MiddleDataset(write_middle(tmp_path, data), tmp_path / "img")
    balanced = ClassBalancedDataset(ds, oversample_thr=0.5)
    # class 1 in 1/4 of the images: r = sqrt(0.5 / 0.25) = 1.414 -> ceil 2 copies of image 0
    assert len(balanced) == 5 and balanced.indices.tolist() == [0, 0, 1, 2, 3]
    assert len(balanced.aspect_ratios()) == 5 and balanced.get_record(1).image_id == 0


def test_concat_index_mapping_and_class_check(tmp_path, middle):
    other = MiddleDataset(write_middle(tmp_path / "o"), tmp_path / "o" / "img")
    ds = ConcatDataset([middle, RepeatDataset(other, 2)])
    assert len(ds) == 6 and ds.cumulative_sizes == [2, 6]
    assert [ds.locate(i) for i in (0, 1, 2, 5, -1)] == [(0, 0), (0, 1), (1, 0), (1, 3), (1, 3)]
    assert ds.get_record(3).image_id == 1 and len(ds.aspect_ratios()) == 6 and len(ds.class_sets()) == 6
    with pytest.raises(IndexError):
        ds.locate(6)
    subset = MiddleDataset(tmp_path / "o" / "middle.json", tmp_path / "o" / "img", classes=["dog", "cat"])
    with pytest.raises(ValueError, match=r"dataset 1 .* has classes \['dog', 'cat'\] but dataset 0 has"):
        ConcatDataset([middle, subset])

"""EvalResult: IoU types, per-class access and the text tables."""

from __future__ import annotations

import math

from lightdet.evaluation import COCO_STAT_NAMES, EvalResult


def _result(num_classes: int, iou_types: tuple[str, ...] = ("bbox", "segm")) -> EvalResult:
    metrics = {f"{t}_{n}": 0.1 * i + (0.01 if t == "segm" else 0) for t in iou_types
               for i, n in enumerate(COCO_STAT_NAMES)}  # fmt: skip
    aps = {f"class{k:02d}": (math.nan if k == 3 else k / 100) for k in range(num_classes)}
    per_class = {t: dict(aps) for t in iou_types}
    return EvalResult(metrics=metrics, per_class_by_type=per_class, num_images=7)


def test_iou_types_and_per_class_of_the_first_type() -> None:
    result = _result(4)
    assert result.iou_types == ["bbox", "segm"]
    assert result.per_class == result.per_class_by_type["bbox"]
    assert EvalResult(metrics={}).per_class == {} and EvalResult(metrics={}).iou_types == []


def test_coco_table_has_every_stat_per_type() -> None:
    text = _result(2).render(width=200)
    assert text.count("0.50:0.95") == 10 and "maxDets" in text
    assert "1.100" in text and "1.110" in text  # bbox_AR_l and segm_AR_l


def test_per_class_table_groups_many_classes() -> None:
    table = _result(14, ("bbox",)).per_class_table()
    assert len(table.columns) == 6 and table.row_count == 5  # 3 x (class, AP), ceil(14 / 3) rows
    text = _result(14, ("bbox",)).render(width=200)
    assert all(f"class{k:02d}" in text for k in range(14)) and "nan" in text and "0.130" in text
    assert _result(5, ("bbox",)).per_class_table().row_count == 5

"""``analyze`` on shapes: every figure written and readable, and the JSON's numbers equal pycocotools'."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from lightdet.analysis import COCO_STAT_NAMES, FIGURES, AnalysisReport, analyze


@pytest.fixture(scope="module")
def report(results_file: Path, shapes_val: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> AnalysisReport:
    ann_file, img_dir = shapes_val
    return analyze(results_file, ann_file, tmp_path_factory.mktemp("analysis"), img_dir=img_dir)


def pycocotools_eval(results_file: Path, ann_file: Path, image_ids: list[int] | None = None) -> COCOeval:
    """The reference: pycocotools' COCOeval on the same files, run independently of lightdet."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        ev = COCOeval(gt, gt.loadRes(str(results_file)), "bbox")
        if image_ids is not None:
            ev.params.imgIds = image_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _class_ap(precision: np.ndarray, k: int, t: slice | int, area: int = 0) -> float | None:
    p = precision[t, :, k, area, -1]
    valid = p[p > -1]
    return float(valid.mean()) if valid.size else None


def test_every_figure_is_a_non_empty_image(report: AnalysisReport) -> None:
    assert set(report.figures) == set(FIGURES)
    for name, path in report.figures.items():
        assert path.is_file() and path.parent == report.out_dir, name
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("L"), dtype=np.float64)
        assert min(pixels.shape) > 200, name
        assert pixels.std() > 5, f"{name} is blank"
    page = report.html.read_text()
    assert all(f'src="{name}"' in page for name in FIGURES)
    assert "analysis.json" in page


def test_json_numbers_equal_pycocotools(report: AnalysisReport, results_file: Path, shapes_val: tuple[Path, Path]) -> None:
    numbers: dict[str, Any] = json.loads(report.json.read_text())
    ref = pycocotools_eval(results_file, shapes_val[0])
    for name, value in zip(COCO_STAT_NAMES, ref.stats):
        expected = None if value == -1 else value
        assert numbers["stats"][name] == pytest.approx(expected, abs=1e-9), name
    precision = ref.eval["precision"]
    names = {c["id"]: c["name"] for c in ref.cocoGt.dataset["categories"]}
    for k, cat in enumerate(ref.params.catIds):
        row = numbers["per_class"][names[cat]]
        assert row["AP"] == pytest.approx(_class_ap(precision, k, slice(None)), abs=1e-9)
        assert row["AP_50"] == pytest.approx(_class_ap(precision, k, 0), abs=1e-9)
        assert row["AP_75"] == pytest.approx(_class_ap(precision, k, 5), abs=1e-9)
        assert row["num_gt"] == len(ref.cocoGt.getAnnIds(catIds=[cat], iscrowd=False))
        curve = numbers["pr_curves"]["iou_0.50"]["per_class"][names[cat]]
        assert np.allclose(curve, precision[0, :, k, 0, -1], atol=1e-6)
    overall = numbers["pr_curves"]["iou_0.50"]["overall"]
    assert np.mean(overall) == pytest.approx(ref.stats[1], abs=1e-6)  # the mean curve's area is mAP@0.5
    for a, size in enumerate(("small", "medium", "large"), start=1):
        expected = None if ref.stats[2 + a] == -1 else ref.stats[2 + a]
        assert numbers["ap_by_size"][size]["AP"] == pytest.approx(expected, abs=1e-9)
        low, high = ref.params.areaRng[a]
        areas = [g["area"] for g in ref.cocoGt.dataset["annotations"] if not g.get("iscrowd")]
        assert numbers["ap_by_size"][size]["num_gt"] == sum(low <= x < high for x in areas)


def test_error_counts_agree_across_views(report: AnalysisReport) -> None:
    """Gallery counts, confusion matrix and the best F1 are three views of one matching at one threshold."""
    a = report.analysis
    tp, fp, fn = (sum(s[k] for s in a.images.values()) for k in ("tp", "fp", "fn"))
    best = a.f1["all classes"]
    assert best.best_f1 == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert best.precision_at_best == pytest.approx(tp / (tp + fp))
    matrix = np.asarray(a.confusion["matrix"])
    assert matrix.shape == (len(a.class_names) + 1,) * 2
    assert np.trace(matrix[:-1, :-1]) == tp  # correct class, IoU >= 0.5, at the same threshold
    assert matrix[:-1].sum() == a.num_gt  # every object is in its row once: found, confused or missed
    assert a.tide["counts"]["Miss"] > 0 and a.tide["counts"]["Cls"] > 0 and a.tide["counts"]["Bkg"] > 0


def test_a_partial_validation_is_evaluated_on_its_images(results_file: Path, shapes_val: tuple[Path, Path],
                                                         tmp_path: Path) -> None:  # fmt: skip
    ids = list(range(1, 41, 3))
    partial = analyze(results_file, shapes_val[0], tmp_path, image_ids=ids, gallery_size=2)
    ref = pycocotools_eval(results_file, shapes_val[0], image_ids=ids)
    assert partial.analysis.stats["mAP"] == pytest.approx(ref.stats[0], abs=1e-9)
    assert partial.analysis.num_images == len(ids)
    assert {g["image_id"] for g in json.loads(partial.json.read_text())["gallery"]} <= set(ids)


def test_lightdet_infer_predictions_are_refused(shapes_val: tuple[Path, Path], tmp_path: Path) -> None:
    predictions = tmp_path / "predictions.json"
    predictions.write_text(json.dumps({"images": [], "categories": [], "annotations": []}))
    with pytest.raises(ValueError, match="lightdet-test"):
        analyze(predictions, shapes_val[0], tmp_path / "out")

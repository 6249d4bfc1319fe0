"""CocoEvaluator against pycocotools' COCOeval run directly on the same ground truth and detections."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from coco_random import RandomCoco, make_random_coco
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from lightdet.evaluation import COCO_STAT_NAMES, CocoEvaluator, EvalResult
from lightdet.structures import Detections

BACKENDS = ["faster_coco_eval", "pycocotools"]


def reference_eval(
    ann_file: Path,
    results: list[dict[str, Any]],
    image_ids: list[int] | None = None,
    cat_ids: list[int] | None = None,
    iou_type: str = "bbox",
) -> COCOeval:
    """pycocotools' COCOeval, the way its README runs it."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        ev = COCOeval(gt, gt.loadRes(copy.deepcopy(results)), iou_type)
        if image_ids is not None:
            ev.params.imgIds = image_ids
        if cat_ids is not None:
            ev.params.catIds = cat_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def stats_of(result: EvalResult, iou_type: str = "bbox") -> np.ndarray:
    return np.array([result.metrics[f"{iou_type}_{name}"] for name in COCO_STAT_NAMES])


def test_random_fixture_covers_the_hard_cases(random_coco: RandomCoco) -> None:
    anns = random_coco.gt["annotations"]
    areas = np.array([a["area"] for a in anns])
    assert any(a["iscrowd"] for a in anns)
    assert (areas < 32**2).any() and ((areas > 32**2) & (areas < 96**2)).any() and (areas > 96**2).any()
    annotated = {a["image_id"] for a in anns}
    assert any(m.image_id not in annotated for m in random_coco.metas)
    assert len({m.ori_size for m in random_coco.metas}) > 5


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stats_equal_pycocotools(tmp_path: Path, backend: str, seed: int) -> None:
    data = make_random_coco(tmp_path / "gt.json", seed=seed)
    evaluator = CocoEvaluator(str(data.ann_file), backend=backend)
    evaluator.process(data.detections[:5], data.metas[:5])  # two batches, as in a validation loop
    evaluator.process(data.detections[5:], data.metas[5:])
    result = evaluator.compute()

    ref = reference_eval(data.ann_file, data.results())
    np.testing.assert_allclose(stats_of(result), ref.stats, atol=1e-6, rtol=0)
    assert result.num_images == len(data.metas)
    assert list(result.metrics) == [f"bbox_{n}" for n in COCO_STAT_NAMES]
    assert 0.05 < result.metrics["bbox_mAP"] < 0.95  # neither trivially empty nor perfect


@pytest.mark.parametrize("backend", BACKENDS)
def test_per_class_ap(random_coco: RandomCoco, backend: str) -> None:
    evaluator = CocoEvaluator(str(random_coco.ann_file), backend=backend)
    evaluator.process(random_coco.detections, random_coco.metas)
    result = evaluator.compute()
    assert list(result.per_class) == ["cat", "bird", "dog", "kite"]  # labels in category-id order

    ref = reference_eval(random_coco.ann_file, random_coco.results())
    names = {c["id"]: c["name"] for c in random_coco.gt["categories"]}
    for k, cat_id in enumerate(ref.params.catIds):
        p = ref.eval["precision"][:, :, k, 0, -1]
        expected = p[p > -1].mean() if (p > -1).any() else float("nan")
        np.testing.assert_allclose(result.per_class[names[cat_id]], expected, atol=1e-6, equal_nan=True)
    assert math.isnan(result.per_class["kite"])  # no ground truth
    # One category evaluated alone: its mAP is its per-class AP.
    alone = reference_eval(random_coco.ann_file, random_coco.results(), cat_ids=[7])
    assert result.per_class["dog"] == pytest.approx(alone.stats[0], abs=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_class_subset_maps_labels_by_name(random_coco: RandomCoco, backend: str) -> None:
    """Configured classes ["dog", "cat"]: label 0 is category 7, label 1 is category 1."""
    keep = {1: 1, 7: 0}  # category id -> configured label
    dets = []
    for det in random_coco.detections:
        cats = torch.tensor([random_coco.label_cat_ids[int(lb)] for lb in det.labels], dtype=torch.int64)
        mask = (cats == 1) | (cats == 7)
        labels = torch.tensor([keep[int(c)] for c in cats[mask]], dtype=torch.int64)
        dets.append(Detections(boxes=det.boxes[mask], scores=det.scores[mask], labels=labels))
    evaluator = CocoEvaluator(str(random_coco.ann_file), ["dog", "cat"], backend=backend)
    evaluator.process(dets, random_coco.metas)
    result = evaluator.compute()

    results = [r for r in random_coco.results() if r["category_id"] in (1, 7)]
    ref = reference_eval(random_coco.ann_file, results, cat_ids=[1, 7])
    np.testing.assert_allclose(stats_of(result), ref.stats, atol=1e-6, rtol=0)
    assert list(result.per_class) == ["dog", "cat"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_partial_validation_uses_processed_images_only(random_coco: RandomCoco, backend: str) -> None:
    evaluator = CocoEvaluator(str(random_coco.ann_file), backend=backend)
    evaluator.process(random_coco.detections[1:7], random_coco.metas[1:7])
    result = evaluator.compute()
    ids = [m.image_id for m in random_coco.metas[1:7]]
    ref = reference_eval(random_coco.ann_file, random_coco.results(set(ids)), image_ids=ids)
    np.testing.assert_allclose(stats_of(result), ref.stats, atol=1e-6, rtol=0)
    assert result.num_images == 6


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_detections(random_coco: RandomCoco, backend: str) -> None:
    evaluator = CocoEvaluator(str(random_coco.ann_file), backend=backend)
    evaluator.process([Detections.empty() for _ in random_coco.metas], random_coco.metas)
    result = evaluator.compute()
    # The ground truth has objects in every area range, so every statistic is defined and zero.
    assert all(v == 0.0 for v in result.metrics.values()), result.metrics
    assert result.num_images == len(random_coco.metas)
    assert result.per_class["dog"] == 0.0 and math.isnan(result.per_class["kite"])


def test_images_without_detections_still_count(random_coco: RandomCoco) -> None:
    """An image processed without detections contributes its ground truth as misses."""
    dets = list(random_coco.detections)
    dets[4] = Detections.empty()
    evaluator = CocoEvaluator(str(random_coco.ann_file), backend="pycocotools")
    evaluator.process(dets, random_coco.metas)
    results = [r for r in random_coco.results() if r["image_id"] != random_coco.metas[4].image_id]
    ref = reference_eval(random_coco.ann_file, results)
    np.testing.assert_allclose(stats_of(evaluator.compute()), ref.stats, atol=1e-6, rtol=0)


def test_outfile_and_reset(random_coco: RandomCoco, tmp_path: Path) -> None:
    out = tmp_path / "out" / "results.json"
    evaluator = CocoEvaluator(str(random_coco.ann_file), outfile=str(out))
    evaluator.process(random_coco.detections, random_coco.metas)
    evaluator.compute()
    written = json.loads(out.read_text())
    expected = random_coco.results()
    assert len(written) == len(expected)
    for got, ref in zip(written, expected):
        assert got["image_id"] == ref["image_id"] and got["category_id"] == ref["category_id"]
        assert got["bbox"] == pytest.approx(ref["bbox"]) and got["score"] == pytest.approx(ref["score"])
        assert isinstance(got["score"], float) and all(isinstance(v, float) for v in got["bbox"])
    evaluator.reset()
    assert evaluator.num_images == 0
    with pytest.raises(RuntimeError, match="no images were processed"):
        evaluator.compute()


def test_same_image_processed_twice_counts_once(random_coco: RandomCoco) -> None:
    evaluator = CocoEvaluator(str(random_coco.ann_file))
    evaluator.process(random_coco.detections, random_coco.metas)
    evaluator.process(random_coco.detections[:3], random_coco.metas[:3])
    assert evaluator.num_images == len(random_coco.metas)
    ref = reference_eval(random_coco.ann_file, random_coco.results())
    np.testing.assert_allclose(stats_of(evaluator.compute()), ref.stats, atol=1e-6, rtol=0)


def test_classes_from_bare_name_and_txt(random_coco: RandomCoco, tmp_path: Path) -> None:
    assert CocoEvaluator(str(random_coco.ann_file), "dog").class_names == ["dog"]
    txt = tmp_path / "classes.txt"
    txt.write_text("bird\n# comment\ncat\n")
    assert CocoEvaluator(str(random_coco.ann_file), str(txt)).class_names == ["bird", "cat"]


def test_bad_inputs_are_named(random_coco: RandomCoco, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"instances.json.*'dgo' \(did you mean 'dog'\?\)") as exc:
        _ = CocoEvaluator(str(random_coco.ann_file), ["cat", "dgo"]).class_names
    assert str(random_coco.ann_file) in str(exc.value)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        CocoEvaluator(str(tmp_path / "missing.json")).process([], [])
    evaluator = CocoEvaluator(str(random_coco.ann_file), ["cat", "dog"])
    bad_label = Detections(torch.tensor([[0.0, 0, 5, 5]]), torch.tensor([0.5]), torch.tensor([2]))
    with pytest.raises(ValueError, match=r"labels \[2\] outside 0..1"):
        evaluator.process([bad_label], random_coco.metas[:1])
    meta = dataclasses.replace(random_coco.metas[0], image_id=99999)
    with pytest.raises(ValueError, match="image_id 99999"):
        evaluator.process([Detections.empty()], [meta])
    with pytest.raises(ValueError, match="iou_types"):
        CocoEvaluator(str(random_coco.ann_file), iou_types=("box",))
    with pytest.raises(ValueError, match="backend"):
        CocoEvaluator(str(random_coco.ann_file), backend="detectron2")  # type: ignore[arg-type]


def test_tables_render(random_coco: RandomCoco) -> None:
    evaluator = CocoEvaluator(str(random_coco.ann_file))
    evaluator.process(random_coco.detections, random_coco.metas)
    result = evaluator.compute()
    text = result.render()
    assert "0.50:0.95" in text and "maxDets" in text and f"{result.metrics['bbox_mAP']:.3f}" in text
    assert "kite" in text and "nan" in text and f"{result.per_class['dog']:.3f}" in text
    unclassed = CocoEvaluator(str(random_coco.ann_file), classwise=False)
    unclassed.process(random_coco.detections, random_coco.metas)
    quiet = unclassed.compute()
    assert quiet.per_class == {} and "kite" not in quiet.render()


def _segm_dataset(path: Path, seed: int = 0) -> tuple[list[Detections], list[Any], list[dict[str, Any]]]:
    """Polygon ground truth (triangles, rectangles) and jittered predicted masks with their boxes."""
    import pycocotools.mask as mask_utils

    from lightdet.structures import ImageMeta

    rng = np.random.default_rng(seed)
    images, anns, dets, metas, ref = [], [], [], [], []
    for i in range(6):
        h, w = int(rng.integers(30, 90)), int(rng.integers(30, 90))
        images.append({"id": i + 1, "file_name": f"{i}.png", "height": h, "width": w})
        masks, boxes, labels = [], [], []
        for _ in range(int(rng.integers(0, 4))):
            x1, y1 = rng.uniform(0, w / 2), rng.uniform(0, h / 2)
            x2, y2 = rng.uniform(x1 + 3, w), rng.uniform(y1 + 3, h)
            poly = [x1, y1, x2, y1, x2, y2] + ([x1, y2] if rng.random() < 0.5 else [])
            rle = mask_utils.merge(mask_utils.frPyObjects([poly], h, w))
            cat = int(rng.integers(1, 3))
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": cat, "segmentation": [poly],
                         "area": float(mask_utils.area(rle)), "bbox": [x1, y1, x2 - x1, y2 - y1],
                         "iscrowd": 0})  # fmt: skip
            shift = rng.integers(-2, 3, 2)
            mask = np.roll(mask_utils.decode(rle), tuple(shift), axis=(0, 1)).astype(bool)
            masks.append(mask)
            boxes.append([x1 + shift[1], y1 + shift[0], x2 + shift[1], y2 + shift[0]])
            labels.append(cat - 1)
        scores = rng.uniform(0.1, 1, len(labels))
        det = Detections(
            boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            scores=torch.tensor(scores, dtype=torch.float32),
            labels=torch.tensor(labels, dtype=torch.int64),
            masks=torch.from_numpy(np.stack(masks)) if masks else torch.zeros((0, h, w), dtype=torch.bool),
        )
        for mask, score, label in zip(masks, det.scores.tolist(), labels):
            rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
            ref.append({"image_id": i + 1, "category_id": label + 1, "segmentation": rle, "score": score})
        dets.append(det)
        metas.append(ImageMeta(image_id=i + 1, file_name=f"{i}.png", ori_size=(h, w), img_size=(h, w)))
    cats = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return dets, metas, ref


@pytest.mark.parametrize("backend", BACKENDS)
def test_segm_equals_pycocotools(tmp_path: Path, backend: str) -> None:
    ann_file = tmp_path / "segm.json"
    dets, metas, ref_results = _segm_dataset(ann_file)
    evaluator = CocoEvaluator(str(ann_file), iou_types=("bbox", "segm"), backend=backend)
    evaluator.process(dets, metas)
    result = evaluator.compute()
    ref = reference_eval(ann_file, ref_results, iou_type="segm")
    np.testing.assert_allclose(stats_of(result, "segm"), ref.stats, atol=1e-6, rtol=0)
    assert result.metrics["segm_mAP"] > 0.1
    assert result.iou_types == ["bbox", "segm"] and set(result.per_class_by_type) == {"bbox", "segm"}
    assert "segm AP" in result.render()
    with pytest.raises(ValueError, match="needs Detections.masks"):
        evaluator.process([Detections.empty()], metas[:1])

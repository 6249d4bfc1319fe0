"""Test-time augmentation: views map back to the original image, merging, state-dict transparency, configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from model_builders import build_tiny_detector, make_batch
from one_stage_builders import build_tiny_retinanet
from torch import nn

from lightdet.models import tta as tta_module
from lightdet.models.detectors.base import to_original
from lightdet.models.tta import augmented_batch, merge_detections, weighted_box_fusion
from lightdet.structures import DetBatch, Detections, DetSample, ImageMeta

TTA = tta_module.TestTimeAugmentation  # imported under another name: pytest would collect a "Test..." class

# The bright rectangle of the test image, in the pipeline's output (100 x 80, half the original's size).
RECT = (20, 10, 60, 40)


class BrightBoxDetector(nn.Module):
    """Finds the box of the pixels brighter than 200 in each view and maps it to the original image, the
    way every detector maps its boxes (``to_original``): a detector whose answer we know in every view."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def predict(self, batch: DetBatch) -> list[Detections]:
        out = []
        for image, meta in zip(batch.images, batch.metas):
            h, w = meta.img_size
            ys, xs = (image[0, :h, :w] > 200).nonzero(as_tuple=True)
            box = torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float32)
            det = Detections(boxes=box, scores=torch.tensor([0.9]), labels=torch.tensor([0]))
            out.append(to_original(det, meta))
        return out


def _bright_batch() -> DetBatch:
    """A 160 x 200 original resized by half to 100 x 80, with a bright rectangle at :data:`RECT`."""
    image = torch.full((3, 80, 100), 50, dtype=torch.uint8)
    x1, y1, x2, y2 = RECT
    image[:, y1:y2, x1:x2] = 255
    meta = ImageMeta(1, "a.jpg", ori_size=(160, 200), img_size=(80, 100), scale_factor=(0.5, 0.5))
    empty = torch.zeros((0, 4), dtype=torch.float32)
    return DetBatch.collate([DetSample(image, empty, torch.zeros(0, dtype=torch.int64), meta)])


@pytest.mark.parametrize("scale", [0.75, 1.0, 1.5])
@pytest.mark.parametrize("flip", [False, True])
def test_every_view_maps_back_to_the_original_box(scale: float, flip: bool) -> None:
    view = augmented_batch(_bright_batch(), scale, flip)
    assert view.metas[0].img_size == (round(80 * scale), round(100 * scale)) and view.metas[0].flip is flip
    (det,) = BrightBoxDetector().predict(view)
    expected = torch.tensor([[2 * c for c in RECT]], dtype=torch.float32)  # original = input / 0.5
    assert torch.allclose(det.boxes, expected, atol=2 / scale + 0.5)


def test_tta_merges_views_into_the_one_object() -> None:
    tta = TTA(BrightBoxDetector(), scales=(0.75, 1.0, 1.5), flip=True)
    assert len(tta.views) == 6
    (det,) = tta.predict(_bright_batch())
    assert len(det) == 1
    assert torch.allclose(det.boxes, torch.tensor([[40.0, 20.0, 120.0, 80.0]]), atol=3)
    (fused,) = TTA(BrightBoxDetector(), scales=(0.75, 1.0, 1.5), merge="wbf").predict(_bright_batch())
    assert len(fused) == 1 and fused.scores.item() == pytest.approx(0.9)  # every view found it: no down-weighting


def _dets(boxes: list[list[float]], scores: list[float], labels: list[int]) -> Detections:
    return Detections(torch.tensor(boxes, dtype=torch.float32), torch.tensor(scores), torch.tensor(labels))


def test_nms_and_wbf_merges() -> None:
    a = _dets([[0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.4], [0, 0])
    b = _dets([[1, 0, 11, 10], [0, 0, 10, 10]], [0.3, 0.8], [0, 1])  # an overlapping box, another class
    nms = merge_detections([a, b], method="nms", iou_thr=0.5)
    assert sorted(nms.scores.tolist()) == pytest.approx([0.4, 0.8, 0.9])
    wbf = merge_detections([a, b], method="wbf", iou_thr=0.5)
    first = wbf[(wbf.labels == 0) & (wbf.boxes[:, 0] < 5)]
    # score-weighted mean of the two class-0 boxes; score (0.9 + 0.3) / 2 views
    assert first.boxes.tolist() == [pytest.approx([0.25, 0.0, 10.25, 10.0])]
    assert first.scores.item() == pytest.approx(0.6)
    # a box only one of the two views saw keeps half its score
    assert wbf[wbf.labels == 1].scores.item() == pytest.approx(0.4)
    assert len(weighted_box_fusion(Detections.empty())) == 0
    with pytest.raises(ValueError, match="nms"):
        merge_detections([a], method="mean")  # type: ignore[arg-type]


def test_state_dict_is_the_detectors_own() -> None:
    torch.manual_seed(0)
    trained, fresh = build_tiny_detector(), build_tiny_detector()
    wrapped = TTA(fresh, scales=(1.0, 1.2))
    assert list(wrapped.state_dict()) == list(trained.state_dict())
    wrapped.load_state_dict(trained.state_dict())  # strict: a plain detector's checkpoint loads
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), trained.state_dict().values()))
    # inside a LightningModule the keys keep its prefix ("detector.backbone..."), as without TTA
    parent_plain, parent_tta = nn.Module(), nn.Module()
    parent_plain.detector, parent_tta.detector = trained, wrapped
    assert list(parent_tta.state_dict()) == list(parent_plain.state_dict())
    parent_tta.load_state_dict(parent_plain.state_dict())


@pytest.mark.parametrize(("build", "merge"), [(build_tiny_detector, "nms"), (build_tiny_retinanet, "wbf")],
                         ids=["two_stage", "one_stage"])  # fmt: skip
def test_real_detectors_predict_through_tta(build, merge: str) -> None:
    torch.manual_seed(0)
    detector = build().eval()
    batch = make_batch()
    tta = TTA(detector, scales=(1.2,), flip=True, merge=merge, max_per_img=30)
    out = tta.predict(batch)
    assert len(out) == len(batch)
    for det, meta in zip(out, batch.metas):
        h, w = meta.ori_size
        assert len(det) <= 30 and det.boxes.dtype == torch.float32
        assert (det.boxes[:, 0::2] >= 0).all() and (det.boxes[:, 0::2] <= w).all() and (det.boxes[:, 1::2] <= h).all()


def test_loss_is_the_detectors() -> None:
    class Lossy(BrightBoxDetector):
        def loss(self, batch: DetBatch) -> dict[str, torch.Tensor]:
            return {"loss_x": self.weight.sum() + len(batch)}

    assert TTA(Lossy()).loss(_bright_batch()) == {"loss_x": torch.tensor(1.0)}


def test_tta_configs_compose_and_build(compose_cfg) -> None:
    cfg = compose_cfg(["ckpt=x.ckpt", "tta=multiscale_flip", "tta.merge=wbf"], config_name="test")
    tta = instantiate(cfg.tta, _convert_="all")(BrightBoxDetector())
    assert isinstance(tta, TTA)
    assert [s for s, _ in tta.views] == [0.8, 0.8, 1.0, 1.0, 1.2, 1.2] and tta.merge == "wbf"
    assert "tta" not in compose_cfg(["ckpt=x.ckpt"], config_name="test")  # off unless chosen


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="scales"):
        TTA(BrightBoxDetector(), scales=())
    with pytest.raises(ValueError, match="merge"):
        TTA(BrightBoxDetector(), merge="vote")  # type: ignore[arg-type]


@pytest.mark.slow
def test_lightdet_test_evaluates_with_tta(compose_cfg, tmp_path: Path) -> None:
    import lightdet
    from lightdet.api import evaluate
    from lightdet.data.synthetic import make_shapes

    data = tmp_path / "data"
    make_shapes(data / "shapes", num_train=8, num_val=4, seed=0)
    tiny = ["dataset.num_train=8", "dataset.num_val=4", "dataset.num_workers=0", "trainer.accelerator=cpu",
            "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "trainer.max_epochs=1",
            "trainer.limit_train_batches=1", "logger=none", "callbacks=none", "schedule.warmup_iters=1"]  # fmt: skip
    result = lightdet.train(lightdet.compose(overrides=[*tiny, f"paths.data_dir={data}"], output_dir=tmp_path / "run"))
    ckpt = tmp_path / "model.ckpt"
    result.trainer.save_checkpoint(ckpt)
    overrides = [f"ckpt={ckpt}", "split=val", "tta=flip", f"out={tmp_path / 'res.json'}", *tiny[:6]]
    cfg = compose_cfg(overrides, config_name="test")
    cfg.paths.data_dir = str(data)
    metrics = evaluate(cfg, overrides=overrides)
    assert "test/bbox_mAP" in metrics and (tmp_path / "res.json").is_file()

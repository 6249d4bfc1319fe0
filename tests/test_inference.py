"""lightdet.Predictor: image inputs of every kind, batching, thresholds, drawing and from_checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

import lightdet
from lightdet.data.transforms import Compose, Resize
from lightdet.engine.module import CONFIG_KEY
from lightdet.inference import Predictor, to_image_tensor
from lightdet.structures import Detections

CLASSES = ["circle", "square", "star"]


@pytest.fixture(scope="module")
def cfg(tmp_path_factory: pytest.TempPathFactory):
    # score_thr 0: an untrained model still returns its top 100 boxes per image, so comparisons have content
    return lightdet.compose(
        "faster_rcnn_small",
        [f"dataset.classes=[{','.join(CLASSES)}]", "model.roi_head.score_thr=0.0"],
        output_dir=tmp_path_factory.mktemp("run"),
    )


@pytest.fixture(scope="module")
def detector(cfg) -> Predictor:
    torch.manual_seed(0)
    return Predictor(instantiate(cfg.model, _convert_="all"), Compose([]), CLASSES)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    pixels = np.full((96, 120, 3), 40, dtype=np.uint8)
    pixels[20:70, 30:90] = rng.integers(150, 255, (50, 60, 3), dtype=np.uint8)
    return pixels


def _same(a: Detections, b: Detections) -> bool:
    return len(a) > 0 and torch.equal(a.labels, b.labels) and torch.allclose(a.boxes, b.boxes, atol=1e-4) and \
        torch.allclose(a.scores, b.scores, atol=1e-6)


def test_every_input_kind_gives_the_same_pixels(image: np.ndarray, tmp_path: Path) -> None:
    path = tmp_path / "img.png"
    Image.fromarray(image).save(path)
    reference = torch.from_numpy(image).permute(2, 0, 1)
    as_float = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    for item in (str(path), path, image, Image.fromarray(image), reference, as_float, image.astype(np.float32) / 255):
        pixels, _ = to_image_tensor(item)
        assert pixels.dtype == torch.uint8 and torch.equal(pixels, reference)
    gray, _ = to_image_tensor(image[..., 0])
    assert gray.shape == (3, 96, 120) and torch.equal(gray[1], reference[0])


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        (np.zeros((4, 4, 4), np.uint8), ValueError, r"\[H, W, 3\]"),
        (torch.zeros(4, 4, 3, dtype=torch.uint8), ValueError, r"\[3, H, W\]"),
        (torch.full((3, 4, 4), 2.0), ValueError, r"\[0, 1\]"),
        ("no/such/image.jpg", FileNotFoundError, "no/such/image.jpg"),
        (42, TypeError, "int"),
    ],
)
def test_bad_inputs_are_named(bad, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        to_image_tensor(bad)


def test_predict_single_list_and_batch_tensor(detector: Predictor, image: np.ndarray) -> None:
    single = detector.predict(image)
    assert isinstance(single, Detections) and len(single) > 0
    assert float(single.boxes[:, 2].max()) <= 120 and float(single.boxes[:, 3].max()) <= 96
    listed = detector.predict([image, Image.fromarray(image)])
    assert isinstance(listed, list) and len(listed) == 2 and all(_same(single, d) for d in listed)
    stacked = detector.predict(torch.from_numpy(np.stack([image, image])).permute(0, 3, 1, 2))
    assert len(stacked) == 2 and _same(single, stacked[1])
    kept = detector.predict(image, score_thr=float(single.scores.median()))
    assert 0 < len(kept) < len(single) and bool((kept.scores >= single.scores.median()).all())
    with pytest.raises(ValueError, match="batch_size"):
        detector.predict(image, batch_size=0)


def test_boxes_come_back_in_original_pixels(detector: Predictor, image: np.ndarray) -> None:
    """Through a 2x Resize the boxes equal the un-resized model's boxes on the 2x image, halved."""
    import torchvision.transforms.v2.functional as TF

    resized = Predictor(detector.model, Compose([Resize(scale=(240, 192))]), CLASSES)
    det = resized.predict(image)
    big = TF.resize(torch.from_numpy(image).permute(2, 0, 1), [192, 240], antialias=True)
    expected = detector.predict(big)
    assert len(det) > 0 and torch.allclose(det.boxes, expected.boxes / 2, atol=1e-4)
    assert torch.allclose(det.scores, expected.scores)


def test_show_draws_boxes(detector: Predictor, image: np.ndarray) -> None:
    drawn = detector.show(image, score_thr=0.0)
    assert isinstance(drawn, Image.Image) and drawn.size == (120, 96)
    assert not np.array_equal(np.asarray(drawn), image)
    nothing = detector.show(image, Detections.empty())
    assert np.array_equal(np.asarray(nothing), image)


def test_from_checkpoint_restores_model_pipeline_and_classes(cfg, detector: Predictor, tmp_path: Path,
                                                              image: np.ndarray) -> None:
    path = tmp_path / "model.ckpt"
    state = {f"detector.{k}": v for k, v in detector.model.state_dict().items()}
    torch.save({"state_dict": state, CONFIG_KEY: OmegaConf.to_container(cfg, resolve=False)}, path)
    loaded = Predictor.from_checkpoint(path, device="cpu")
    assert loaded.class_names == CLASSES and not loaded.model.training
    assert _same(detector.predict(image), loaded.predict(image))


def test_from_checkpoint_without_config_explains(tmp_path: Path) -> None:
    path = tmp_path / "bare.ckpt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(ValueError, match="lightdet-convert"):
        Predictor.from_checkpoint(path)

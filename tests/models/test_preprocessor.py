import pytest
import torch
from model_builders import make_sample

from lightdet.models import DetPreprocessor
from lightdet.structures import DetBatch

MEAN, STD = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)


def test_normalises_rezeroes_padding_and_pads_to_divisor():
    batch = DetBatch.collate([make_sample(30, 40, seed=1), make_sample(20, 50, seed=2)])
    x, sizes = DetPreprocessor(MEAN, STD, 32)(batch.images, [m.img_size for m in batch.metas])
    assert x.shape == (2, 3, 32, 64) and x.dtype == torch.float32 and sizes == [(30, 40), (20, 50)]
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    torch.testing.assert_close(x[0, :, :30, :40], (batch.images[0, :, :30, :40].float() - mean) / std)
    assert x[0, :, 30:].abs().sum() == 0 and x[0, :, :, 40:].abs().sum() == 0
    assert x[1, :, 20:].abs().sum() == 0 and x[1, :, :, 50:].abs().sum() == 0


def test_bgr_and_no_divisor():
    batch = DetBatch.collate([make_sample(30, 40)])
    rgb, _ = DetPreprocessor(MEAN, STD, 1)(batch.images, [(30, 40)])
    bgr, _ = DetPreprocessor(MEAN, STD, 1, to_bgr=True)(batch.images, [(30, 40)])
    assert rgb.shape == (1, 3, 30, 40)
    torch.testing.assert_close(bgr, rgb.flip(1))


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        DetPreprocessor()(torch.zeros(1, 3, 8, 8), [(8, 8)])
    with pytest.raises(ValueError, match="2 image sizes"):
        DetPreprocessor()(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), [(8, 8), (8, 8)])
    with pytest.raises(ValueError, match="3 values"):
        DetPreprocessor(mean=(1.0, 2.0))

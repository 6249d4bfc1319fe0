"""CUDA checks (``pytest -m cuda``, run by scripts/gpu_check.sh): AMP training per detector family,
channels_last, one-GPU DDP on NCCL, EMA and resume on the GPU. Skipped where CUDA is unavailable."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from cli_helpers import TINY, run_cli
from hydra.utils import instantiate

from lightdet.api import train
from lightdet.benchmark import synthetic_batch
from lightdet.composition import compose_config

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (scripts/gpu_check.sh)"),
]

GPU = [*[o for o in TINY if not o.startswith("trainer.accelerator") and not o.startswith("trainer.devices")], "trainer=gpu"]
FAMILIES = {
    "faster_rcnn_small": [],
    "mask_rcnn_small": ["dataset.with_mask=true"],
    "cascade_rcnn": ["model.backbone.norm_eval=false"],
    "retinanet_small": [],
    "fcos_small": [],
}


def _train(compose_cfg, data_dir: Path, extra: list[str]):
    cfg = compose_cfg([*GPU, *extra])
    cfg.paths.data_dir = str(data_dir)
    return train(cfg)


@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed"])
@pytest.mark.parametrize("model", sorted(FAMILIES))
def test_amp_training_steps(compose_cfg, shapes_data_dir: Path, model: str, precision: str) -> None:
    result = _train(compose_cfg, shapes_data_dir, [f"model={model}", f"trainer.precision={precision}", *FAMILIES[model]])
    assert result.trainer.global_step == 2
    losses = result.trainer.callback_metrics
    assert all(torch.isfinite(v).all() for k, v in losses.items() if k.startswith("train/"))


def test_channels_last_gives_the_same_detections() -> None:
    cfg = compose_config(None, ["+model=faster_rcnn_small", "+dataset.num_classes=5"])
    torch.manual_seed(0)
    model = instantiate(cfg.model, _convert_="all").cuda().eval()
    batch = synthetic_batch(2, 128, 160).to("cuda")
    with torch.inference_mode():
        plain = model.predict(batch)
        last = model.to(memory_format=torch.channels_last).predict(batch)
    for a, b in zip(plain, last):
        assert len(a) == len(b)
        torch.testing.assert_close(a.boxes, b.boxes, atol=1e-2, rtol=0)
        torch.testing.assert_close(a.scores, b.scores, atol=1e-4, rtol=0)


def test_ddp_on_one_gpu_with_nccl(tmp_path: Path, shapes_data_dir: Path) -> None:
    args = [*GPU, "trainer=ddp", "trainer.devices=1", f"paths.data_dir={shapes_data_dir}", f"hydra.run.dir={tmp_path / 'run'}"]
    done = run_cli(["lightdet-train", *args], tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


def test_ema_and_resume_on_the_gpu(compose_cfg, shapes_data_dir: Path) -> None:
    keep = ["callbacks=ema", "callbacks.model_checkpoint.save_top_k=-1", "callbacks.model_checkpoint.monitor=null",
            "callbacks.model_checkpoint.filename='epoch{epoch:02d}'", "trainer.max_epochs=2"]  # fmt: skip
    full = _train(compose_cfg, shapes_data_dir, keep)
    first = Path(full.output_dir) / "checkpoints" / "epoch00.ckpt"
    resumed = _train(compose_cfg, shapes_data_dir, [*keep, f"ckpt_path={first}"])
    assert resumed.trainer.global_step == full.trainer.global_step
    for a, b in zip(full.module.detector.parameters(), resumed.module.detector.parameters()):
        assert a.device.type == "cuda" and torch.isfinite(b).all()

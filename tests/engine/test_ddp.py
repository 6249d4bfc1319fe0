"""Data-parallel training: 2 gloo processes equal 1 process with the same global batch; SyncBN and norm_eval."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from lightning.pytorch.accelerators import CPUAccelerator
from lightning.pytorch.strategies import DDPStrategy
from omegaconf import DictConfig
from torch import Tensor, nn

from lightdet.engine import DetectionModule
from lightdet.models import ResNet
from lightdet.structures import DetBatch, Detections

SEED = 0

# Shuffling off: DetDataModule gives rank r the positions r, r + 2, ... of the dataset (DistributedSampler with
# shuffle=False), so the two ranks' batches of 2 at step k are exactly one process's sequential batch of 4 at
# step k, in every epoch. No aspect-ratio grouping: it would group each rank's shard on its own (same images
# per epoch, not per step). No flip: the pipeline's randomness differs per process.
DATA = [
    "dataset.num_train=16", "dataset.num_val=4", "dataset.num_workers=0",
    "+dataset.datamodule.group_by_aspect_ratio=false", "+dataset.datamodule.shuffle=false",
    "dataset.pipeline.train=${dataset.pipeline.test}", "schedule.warmup_iters=2",
]  # fmt: skip


class FirstBoxRegressor(nn.Module):
    """A detector without batch coupling: GroupNorm features of each image's valid region, per-image losses.

    ``loss`` averages per-image terms over the batch, so the gradient of a batch of 4 is the mean of the
    gradients of its halves, which is what DDP's all-reduce computes. (Faster R-CNN's anchor and RoI
    samplers draw random subsets, one random stream per process, so no two process layouts match it.)
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=4)
        self.norm = nn.GroupNorm(2, 8)
        self.box = nn.Linear(8, 4)
        self.cls = nn.Linear(8, num_classes)

    def _features(self, batch: DetBatch) -> Tensor:
        """``[B, 8]``: pooled features of each image cropped to ``metas[i].img_size`` (no padding)."""
        feats = []
        for image, meta in zip(batch.images, batch.metas):
            h, w = meta.img_size
            x = image[:, :h, :w].float()[None] / 255
            feats.append(torch.relu(self.norm(self.conv(x))).mean((2, 3)))
        return torch.cat(feats)

    def loss(self, batch: DetBatch) -> dict[str, Tensor]:
        feats = self._features(batch)
        sizes = torch.tensor([[m.img_size[1], m.img_size[0]] * 2 for m in batch.metas], dtype=torch.float32)
        target = torch.stack([b[0] for b in batch.boxes]) / sizes
        first_labels = torch.stack([lb[0] for lb in batch.labels])
        return {
            "loss_bbox": F.l1_loss(self.box(feats).sigmoid(), target),
            "loss_cls": F.cross_entropy(self.cls(feats), first_labels),
        }

    def predict(self, batch: DetBatch) -> list[Detections]:
        feats = self._features(batch)
        scores, labels = self.cls(feats).softmax(1).max(1)
        out = []
        for i, meta in enumerate(batch.metas):
            h, w = meta.ori_size
            box = self.box(feats[i : i + 1]).sigmoid() * torch.tensor([w, h, w, h], dtype=torch.float32)
            out.append(Detections(boxes=box, scores=scores[i : i + 1], labels=labels[i : i + 1]))
        return out


def _train(cfg: DictConfig, devices: int, batch_size: int, steps: int) -> dict[str, Tensor]:
    """Trains ``steps`` optimizer steps on the composed data/optimizer/schedule; returns the weights."""
    L.seed_everything(SEED)
    datamodule = instantiate(cfg.dataset.datamodule, batch_size=batch_size, _convert_="all")
    module = DetectionModule(
        FirstBoxRegressor(int(cfg.dataset.num_classes)),
        optimizer=instantiate(cfg.optimizer),
        scheduler=instantiate(cfg.schedule),
        evaluator=None,
        print_tables=False,
    )
    # ddp_spawn: Lightning's default subprocess launcher would re-run pytest's command line in each rank.
    trainer = instantiate(
        cfg.trainer, devices=devices, strategy="ddp_spawn" if devices > 1 else "auto", max_steps=steps,
        limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(module, datamodule=datamodule)
    # ddp_spawn: rank 0's final weights are loaded back into this process's module
    assert devices > 1 or trainer.global_step == steps
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.slow  # two spawned interpreters: about 10 s on 2 cores
def test_two_process_ddp_sim_equals_one_process_with_the_same_global_batch(
    compose_cfg: Callable[..., DictConfig],
) -> None:
    cfg = compose_cfg(["trainer=ddp_sim", *DATA])
    assert cfg.trainer.devices == 2 and cfg.trainer.accelerator == "cpu"
    # 16 images, 4 per step: 5 steps cross an epoch boundary
    single = _train(cfg, devices=1, batch_size=4, steps=5)
    ddp = _train(cfg, devices=2, batch_size=2, steps=5)  # 2 per process x 2 processes
    start = FirstBoxRegressor(int(cfg.dataset.num_classes))
    assert not torch.allclose(single["detector.box.weight"], start.box.weight)  # it trained
    for key, value in single.items():
        torch.testing.assert_close(ddp[key], value, atol=1e-5, rtol=0, msg=lambda m, k=key: f"{k}: {m}")


def test_sync_batchnorm_conversion_keeps_norm_eval_frozen() -> None:
    """trainer.sync_batchnorm=true converts BN layers; a norm_eval backbone keeps them in eval mode."""
    frozen = nn.SyncBatchNorm.convert_sync_batchnorm(ResNet(depth=18, norm="BN", norm_eval=True))
    trained = nn.SyncBatchNorm.convert_sync_batchnorm(ResNet(depth=18, norm="BN", norm_eval=False))
    for backbone, expect_training in ((frozen.train(), False), (trained.train(), True)):
        sync = [m for m in backbone.modules() if isinstance(m, nn.SyncBatchNorm)]
        assert sync and not any(isinstance(m, nn.BatchNorm2d) for m in backbone.modules())
        assert {m.training for m in sync if any(p.requires_grad for p in m.parameters())} == {expect_training}
    # frozen statistics: a training-mode forward pass leaves the running mean alone
    before = frozen.bn1.running_mean.clone()
    frozen(torch.rand(2, 3, 64, 64))
    assert torch.equal(frozen.bn1.running_mean, before)


def test_ddp_trainer_configs(compose_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    ddp = compose_cfg(["trainer=ddp", "trainer.num_nodes=2", "trainer.sync_batchnorm=true"]).trainer
    assert (ddp.strategy, ddp.accelerator, ddp.num_nodes, ddp.sync_batchnorm) == ("ddp", "gpu", 2, True)
    sim = compose_cfg(["trainer=ddp_sim"]).trainer
    trainer = instantiate(sim, logger=False, default_root_dir=str(tmp_path))
    assert trainer.world_size == 2 and isinstance(trainer.accelerator, CPUAccelerator)
    assert isinstance(trainer.strategy, DDPStrategy) and trainer.strategy._get_process_group_backend() == "gloo"

"""PipelineSwitch: a few CPU training epochs, strong pipeline first, the late one from the switch epoch on."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch import nn
from torch.utils.data import Dataset

import lightdet
from lightdet.cli._hydra import CONF_DIR
from lightdet.composition import compose_config
from lightdet.data import DetDataModule, Mosaic, Resize, make_shapes
from lightdet.data.datasets.base import build_pipeline
from lightdet.engine.pipeline_switch import PipelineSwitch
from lightdet.structures import DetBatch, DetSample, ImageMeta

STRONG, WEAK = 50, 200


class Paint:
    """Fills the image with ``value``: marks which pipeline a sample went through."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __call__(self, sample: DetSample) -> DetSample:
        return replace(sample, image=torch.full_like(sample.image, self.value))


def strong() -> list[Any]:
    return [Mosaic(img_scale=(8, 8), max_cached_images=6), Resize((32, 32), keep_ratio=False), Paint(STRONG)]


def weak() -> list[Any]:
    return [Resize((16, 16), keep_ratio=False), Paint(WEAK)]


class Samples(Dataset[DetSample]):
    """Eight 12x12 samples held in memory, run through ``pipeline`` (a dataset with a pipeline attribute)."""

    class_names = ["a"]

    def __init__(self) -> None:
        self.pipeline = build_pipeline(strong())

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> DetSample:
        meta = ImageMeta(image_id=index, file_name="", ori_size=(12, 12), img_size=(12, 12))
        sample = DetSample(
            image=torch.zeros((3, 12, 12), dtype=torch.uint8), boxes=torch.tensor([[2.0, 2, 9, 9]]),
            labels=torch.zeros(1, dtype=torch.int64), meta=meta,
        )  # fmt: skip
        return self.pipeline(sample)


class Recorder(L.LightningModule):
    """Records ``(epoch, image size, pixel values)`` of every training batch."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1))
        self.seen: list[tuple[int, tuple[int, int], list[int]]] = []

    def training_step(self, batch: DetBatch, batch_idx: int) -> torch.Tensor:
        self.seen.append((self.current_epoch, tuple(batch.images.shape[-2:]), batch.images.unique().tolist()))
        return self.weight.sum() * 0.0

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


class CountingDataModule(DetDataModule):
    """Counts the train loaders built."""

    loaders_built = 0

    def train_dataloader(self):  # type: ignore[override]
        self.loaders_built += 1
        return super().train_dataloader()


class ScaleRecorder(Recorder):
    """Records the size of every training batch after a real RT-DETR's multi-scale batch resize (sides 24, 40)."""

    def __init__(self) -> None:
        super().__init__()
        cfg = compose_config(None, ["+model=rtdetr_small", "+dataset.num_classes=1", "+model.train_scales=[24,40]"])
        self.detector = instantiate(cfg.model)

    def training_step(self, batch: DetBatch, batch_idx: int) -> torch.Tensor:
        images = self.detector.random_batch_scale(batch.images.float())
        self.seen.append((self.current_epoch, tuple(images.shape[-2:]), []))
        return self.weight.sum() * 0.0


def _fit(
    tmp_path: Path, switch: PipelineSwitch | None, num_workers: int, max_epochs: int, ckpt: str | None = None,
    extra: list[Callback] = (), module: Recorder | None = None,
) -> tuple[Recorder, CountingDataModule, L.Trainer]:  # fmt: skip
    dm = CountingDataModule(
        train=Samples(), batch_size=2, num_workers=num_workers, persistent_workers=True,
        group_by_aspect_ratio=False, pin_memory=False,
    )  # fmt: skip
    module = module if module is not None else Recorder()
    trainer = L.Trainer(
        max_epochs=max_epochs, accelerator="cpu", devices=1, limit_val_batches=0, logger=False,
        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
        callbacks=[*([switch] if switch else []), *extra], enable_checkpointing=bool(extra),
        default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt)
    return module, dm, trainer


def _per_epoch(module: Recorder) -> dict[int, set[tuple[tuple[int, int], tuple[int, ...]]]]:
    out: dict[int, set[Any]] = {}
    for epoch, size, values in module.seen:
        out.setdefault(epoch, set()).add((size, tuple(values)))
    return out


@pytest.mark.parametrize("num_workers", [0, 2])
def test_epoch_zero_strong_epoch_one_weak(tmp_path: Path, num_workers: int) -> None:
    module, dm, trainer = _fit(tmp_path, PipelineSwitch(epoch=1, pipeline=weak()), num_workers, max_epochs=2)
    # persistent workers or not, every batch of epoch 0 went through the strong pipeline and every batch
    # of epoch 1 through the weak one
    assert _per_epoch(module) == {0: {((32, 32), (STRONG,))}, 1: {((16, 16), (WEAK,))}}
    assert len(module.seen) == 8 and dm.loaders_built == 2
    assert trainer.reload_dataloaders_every_n_epochs == 0  # the one rebuild was asked for, then undone


def test_negative_epoch_counts_back_from_max_epochs(tmp_path: Path) -> None:
    module, dm, _ = _fit(tmp_path, PipelineSwitch(epoch=-1, pipeline=weak()), 0, max_epochs=3)
    per_epoch = _per_epoch(module)
    assert per_epoch[0] == per_epoch[1] == {((32, 32), (STRONG,))} and per_epoch[2] == {((16, 16), (WEAK,))}
    assert dm.loaders_built == 2


def test_without_the_switch_the_strong_pipeline_stays(tmp_path: Path) -> None:
    module, dm, _ = _fit(tmp_path, None, 0, max_epochs=2)
    assert set(_per_epoch(module)) == {0, 1} and all(v == {((32, 32), (STRONG,))} for v in _per_epoch(module).values())
    assert dm.loaders_built == 1


def test_a_run_resumed_past_the_switch_loads_with_the_late_pipeline(tmp_path: Path) -> None:
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="last", monitor=None, save_top_k=1)
    _fit(tmp_path, PipelineSwitch(epoch=1, pipeline=weak()), 0, max_epochs=1, extra=[saver])
    ckpt = str(tmp_path / "ckpt" / "last.ckpt")
    module, dm, _ = _fit(tmp_path, PipelineSwitch(epoch=1, pipeline=weak()), 0, max_epochs=2, ckpt=ckpt)
    assert _per_epoch(module) == {1: {((16, 16), (WEAK,))}} and dm.loaders_built == 1


def _sizes(module: Recorder) -> dict[int, set[tuple[int, int]]]:
    out: dict[int, set[tuple[int, int]]] = {}
    for epoch, size, _ in module.seen:
        out.setdefault(epoch, set()).add(size)
    return out


MULTI_SCALE = {(24, 24), (40, 40)}


def test_multi_scale_batches_stop_at_the_switch(tmp_path: Path) -> None:
    """RT-DETR resizes each batch to 24 or 40 px until the switch, then trains at the late pipeline's 16 px."""
    torch.manual_seed(0)
    module, _, _ = _fit(tmp_path, PipelineSwitch(epoch=1, pipeline=weak()), 0, max_epochs=3, module=ScaleRecorder())
    sizes = _sizes(module)
    assert sizes[0] <= MULTI_SCALE and sizes[1] == sizes[2] == {(16, 16)}
    assert module.detector.late_training
    torch.manual_seed(0)
    without, _, _ = _fit(tmp_path, None, 0, max_epochs=2, module=ScaleRecorder())
    assert _sizes(without)[0] | _sizes(without)[1] == MULTI_SCALE  # no switch: multi-scale to the end


def test_a_run_resumed_past_the_switch_has_no_multi_scale_batches(tmp_path: Path) -> None:
    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="last", monitor=None, save_top_k=1)
    switch = PipelineSwitch(epoch=1, pipeline=weak())
    _fit(tmp_path, switch, 0, max_epochs=1, extra=[saver], module=ScaleRecorder())
    ckpt = str(tmp_path / "ckpt" / "last.ckpt")
    switch = PipelineSwitch(epoch=1, pipeline=weak())
    module, _, _ = _fit(tmp_path, switch, 0, max_epochs=2, ckpt=ckpt, module=ScaleRecorder())
    assert _sizes(module) == {1: {(16, 16)}}


DETR_RECIPES = sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml") if p.stem.startswith(("rtdetr", "dfine")))


@pytest.mark.parametrize("experiment", DETR_RECIPES)
def test_detr_recipes_with_multi_scale_batches_have_the_switch(experiment: str, tmp_path: Path) -> None:
    """Every COCO DETR recipe that draws multi-scale batches stops them with its strong augmentation."""
    cfg = lightdet.compose(experiment, [f"paths.data_dir={tmp_path}"], output_dir=tmp_path / "run")
    if cfg.model.get("train_scales"):
        assert cfg.callbacks.pipeline_switch._target_ == "lightdet.engine.pipeline_switch.PipelineSwitch"
        assert cfg.dataset.pipeline.get("train_late")


def test_switch_needs_a_pipeline_and_a_datamodule_that_switches() -> None:
    with pytest.raises(ValueError, match="train_late"):
        PipelineSwitch(epoch=3, pipeline=None)
    trainer = L.Trainer(max_epochs=5, logger=False, enable_progress_bar=False)
    assert PipelineSwitch(epoch=-2, pipeline=[]).switch_epoch(trainer) == 3
    with pytest.raises(TypeError, match="switch_train_pipeline"):
        PipelineSwitch(epoch=1, pipeline=[]).setup(trainer, Recorder(), "fit")


TINY = [
    "dataset.num_train=8", "dataset.num_val=4", "dataset.batch_size=2", "dataset.num_workers=0",
    "trainer.accelerator=cpu", "trainer.devices=1", "trainer.max_epochs=2", "trainer.limit_train_batches=1",
    "trainer.limit_val_batches=0", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false",
    "schedule.warmup_iters=2",
]  # fmt: skip


class PipelineTypes(Callback):
    """Records, per training batch, the epoch and the step types of the train dataset's pipeline."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, tuple[str, ...]]] = []

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        steps = trainer.datamodule.train.pipeline.transforms
        self.seen.append((trainer.current_epoch, tuple(type(s).__name__ for s in steps)))


@pytest.mark.slow  # a Faster R-CNN trains one step per epoch (Mosaic and MixUp, then the late pipeline)
def test_shapes_rtmdet_strong_switches_in_a_real_run(tmp_path: Path) -> None:
    make_shapes(tmp_path / "data" / "shapes", num_train=8, num_val=4, seed=0)
    cfg = lightdet.compose(
        overrides=[
            *TINY, f"paths.data_dir={tmp_path / 'data'}", "dataset/pipeline=shapes_rtmdet_strong",
            "callbacks=[default,pipeline_switch]", "callbacks.pipeline_switch.epoch=1",
            f"+callbacks.types._target_={__name__}.PipelineTypes",
        ],
        output_dir=tmp_path / "run",
    )  # fmt: skip
    result = lightdet.train(cfg)
    (types,) = [c for c in result.trainer.callbacks if isinstance(c, PipelineTypes)]
    early = ("LoadImage", "Mosaic", "RandomResize", "RandomCrop", "RandomHSV", "RandomFlip", "Pad", "MixUp")
    late = ("LoadImage", "RandomResize", "RandomCrop", "RandomHSV", "RandomFlip", "Pad")
    assert types.seen == [(0, early), (1, late)]
    assert all(torch.isfinite(torch.tensor(v)) for k, v in result.summary["last"].items() if "loss" in k)

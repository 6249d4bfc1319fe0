"""DetectionModule with a tiny conforming detector and a real lightning.Trainer on the CPU."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from lightdet.engine import (
    CONFIG_KEY,
    CosineDecay,
    DetectionModule,
    NonFiniteLossError,
    ParamGroupRules,
    PrefixRule,
    StepDecay,
    build_warmup_scheduler,
)
from lightdet.evaluation import CocoEvaluator
from lightdet.structures import DetBatch, Detections, DetSample, ImageMeta, xyxy_to_xywh

CATEGORIES = [{"id": 5, "name": "a"}, {"id": 9, "name": "b"}]


class FakeDetector(nn.Module):
    """Follows the detector contract: ``loss(batch)`` and ``predict(batch)`` (ground truth + a learnt shift).

    ``nan_from_step``: ``loss_bbox`` becomes NaN from that call of ``loss`` on.
    """

    def __init__(self, nan_from_step: int | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)
        self.bn = nn.BatchNorm2d(2)
        self.shift = nn.Parameter(torch.zeros(4))
        self.nan_from_step = nan_from_step
        self.calls = 0

    def loss(self, batch: DetBatch) -> dict[str, Tensor]:
        feats = self.bn(self.conv(batch.images.float() / 255))
        loss_bbox = (self.shift**2).sum() + 0.1
        if self.nan_from_step is not None and self.calls >= self.nan_from_step:
            loss_bbox = loss_bbox * float("nan")
        self.calls += 1
        return {"loss_cls": (feats.mean() - 1) ** 2, "loss_bbox": loss_bbox, "acc": torch.tensor(0.5)}

    def predict(self, batch: DetBatch) -> list[Detections]:
        return [
            Detections(boxes=b + self.shift.detach(), scores=torch.linspace(0.9, 0.5, len(b)), labels=lb)
            for b, lb in zip(batch.boxes, batch.labels)
        ]


def _samples(n: int = 6) -> list[DetSample]:
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        h, w = 24 + 4 * i, 32 - 2 * i
        xy = torch.randint(0, 8, (3, 2), generator=g).float()
        wh = torch.randint(4, 14, (3, 2), generator=g).float()
        meta = ImageMeta(image_id=10 + i, file_name=f"{i}.png", ori_size=(h, w), img_size=(h, w))
        out.append(DetSample(
            image=torch.randint(0, 255, (3, h, w), dtype=torch.uint8, generator=g),
            boxes=torch.cat([xy, xy + wh], 1), labels=torch.tensor([0, 1, i % 2]), meta=meta,
        ))  # fmt: skip
    return out


def _write_gt(path: Path, samples: list[DetSample]) -> Path:
    images, anns = [], []
    for s in samples:
        h, w = s.meta.ori_size
        images.append({"id": s.meta.image_id, "file_name": s.meta.file_name, "height": h, "width": w})
        for box, label in zip(xyxy_to_xywh(s.boxes).tolist(), s.labels.tolist()):
            cat_id = CATEGORIES[label]["id"]
            anns.append({"id": len(anns) + 1, "image_id": s.meta.image_id, "category_id": cat_id,
                         "bbox": box, "area": box[2] * box[3], "iscrowd": 0})  # fmt: skip
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": CATEGORIES}))
    return path


@pytest.fixture
def samples() -> list[DetSample]:
    return _samples()


@pytest.fixture
def loader(samples: list[DetSample]) -> DataLoader:
    return DataLoader(samples, batch_size=2, collate_fn=DetBatch.collate)


@pytest.fixture
def evaluator(tmp_path: Path, samples: list[DetSample]) -> CocoEvaluator:
    return CocoEvaluator(str(_write_gt(tmp_path / "gt.json", samples)), ["a", "b"])


def _module(detector: nn.Module | None = None, **kwargs: Any) -> DetectionModule:
    sgd = functools.partial(torch.optim.SGD, lr=0.02, momentum=0.9, weight_decay=1e-4)
    kwargs.setdefault("optimizer", sgd)
    kwargs.setdefault("scheduler", None)
    return DetectionModule(detector or FakeDetector(), **kwargs)


def _trainer(**kwargs: Any) -> L.Trainer:
    defaults = dict(
        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0,
    )  # fmt: skip
    return L.Trainer(**{**defaults, **kwargs})


class LrRecorder(L.Callback):
    """Records the logged ``train/lr`` after every training batch and the val metrics after sanity checks."""

    def __init__(self) -> None:
        self.lrs: list[float] = []
        self.after_sanity: dict[str, Tensor] = {}

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.lrs.append(float(trainer.callback_metrics["train/lr"]))

    def on_sanity_check_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.after_sanity = dict(trainer.callback_metrics)
        assert pl_module.last_eval is None  # type: ignore[attr-defined]


def test_fit_logs_losses_lr_and_val_map(loader: DataLoader, evaluator: CocoEvaluator) -> None:
    module = _module(evaluator=evaluator, print_tables=False)
    before = module.detector.conv.weight.detach().clone()
    trainer = _trainer(max_epochs=2, limit_train_batches=2, limit_val_batches=2)
    trainer.fit(module, loader, loader)
    metrics = trainer.callback_metrics
    for key in ("train/loss", "train/loss_cls", "train/loss_bbox", "train/acc", "train/lr"):
        assert key in metrics, key
    summed = float(metrics["train/loss_cls"] + metrics["train/loss_bbox"])
    assert float(metrics["train/loss"]) == pytest.approx(summed)
    assert not torch.equal(before, module.detector.conv.weight)
    # The fake detector returns (nearly) the ground truth of the 4 validated images.
    assert float(metrics["val/bbox_mAP"]) == pytest.approx(module.last_eval.metrics["bbox_mAP"])
    assert module.last_eval.num_images == 4 and module.last_eval.metrics["bbox_mAP_50"] == pytest.approx(1.0)
    assert {f"val/bbox_{k}" for k in ("mAP", "mAP_75", "AR_100", "AR_l")} <= set(metrics)


def test_warmup_and_milestone_in_the_logged_lr(loader: DataLoader) -> None:
    """3 batches per epoch (limit_train_batches): a 1-epoch milestone is iteration 3, inside the warmup."""
    scheduler = functools.partial(build_warmup_scheduler, max_epochs=2, policy=StepDecay(milestones=[1]),
                                  warmup_iters=4, warmup_ratio=0.1)  # fmt: skip
    recorder = LrRecorder()
    trainer = _trainer(max_epochs=2, limit_train_batches=3, limit_val_batches=0, callbacks=[recorder])
    trainer.fit(_module(scheduler=scheduler), loader)
    warm = [0.1 + 0.9 * i / 4 for i in range(4)]
    expected = [0.02 * warm[0], 0.02 * warm[1], 0.02 * warm[2], 0.002 * warm[3], 0.002, 0.002]
    assert recorder.lrs == pytest.approx(expected)


def test_iters_per_epoch_counts_accumulation_and_max_steps(loader: DataLoader) -> None:
    seen: dict[str, int] = {}

    def scheduler(optimizer: torch.optim.Optimizer, **kwargs: int) -> torch.optim.lr_scheduler.LRScheduler:
        seen.update(kwargs)
        return build_warmup_scheduler(optimizer, policy=StepDecay(milestones=[8, 11]), **kwargs)

    # 3 batches, accumulating 2: 2 optimizer steps per epoch; max_steps does not change the epoch length.
    trainer = _trainer(max_epochs=4, max_steps=3, accumulate_grad_batches=2, limit_val_batches=0)
    trainer.fit(_module(scheduler=scheduler), loader)
    assert seen == {"iters_per_epoch": 2, "max_epochs": 4}
    assert trainer.global_step == 3


def test_nan_loss_raises_a_clear_error(loader: DataLoader) -> None:
    trainer = _trainer(max_epochs=1, limit_val_batches=0)
    with pytest.raises(NonFiniteLossError) as exc:
        trainer.fit(_module(FakeDetector(nan_from_step=2)), loader)
    message = str(exc.value)
    assert "loss_bbox" in message and "loss_cls" not in message
    assert "global step 2" in message and "image ids [14, 15]" in message
    assert "lr" in message and "warmup" in message and "zero-size" in message


def test_sanity_check_logs_and_prints_nothing(
    loader: DataLoader, evaluator: CocoEvaluator, capsys: pytest.CaptureFixture[str]
) -> None:
    recorder = LrRecorder()
    trainer = _trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1, num_sanity_val_steps=2,
                       callbacks=[recorder])  # fmt: skip
    module = _module(evaluator=evaluator)
    trainer.fit(module, loader, loader)
    assert not any(k.startswith("val/") for k in recorder.after_sanity)
    out = capsys.readouterr().out
    assert out.count("val epoch 0: 2 images") == 1 and "Per-class AP" in out
    assert module.last_eval is not None and module.last_eval.num_images == 2


def test_validate_without_evaluator_and_test_and_predict(
    loader: DataLoader, evaluator: CocoEvaluator
) -> None:
    assert _trainer().validate(_module(), loader) == [{}]
    module = _module(evaluator=evaluator, print_tables=False)
    results = _trainer().test(module, loader)
    assert results[0]["test/bbox_mAP_50"] == pytest.approx(1.0)
    assert set(results[0]) == {f"test/{k}" for k in module.last_eval.metrics} and len(results[0]) == 12
    predictions = _trainer().predict(_module(), loader)
    assert len(predictions) == 3 and all(isinstance(d, Detections) for batch in predictions for d in batch)


class RecordingDetector(FakeDetector):
    """Records, at each ``predict``, whether it is the trained instance and the conv weight's layout."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)  # a 1x1 weight is contiguous in both layouts

    def predict(self, batch: DetBatch) -> list[Detections]:
        SEEN.append((self is TRAINED[0], self.conv.weight.is_contiguous(memory_format=torch.channels_last)))
        return super().predict(batch)


SEEN: list[tuple[bool, bool]] = []
TRAINED: list[nn.Module] = []


@pytest.mark.parametrize("optimize", [True, False])
def test_evaluation_runs_an_optimized_copy(loader: DataLoader, optimize: bool) -> None:
    """Validation, test and predict run an optimised copy (channels-last weights); the trained detector, the
    state dict and training are untouched. ``optimize_inference=False`` runs the detector itself."""
    SEEN.clear()
    detector = RecordingDetector()
    TRAINED[:] = [detector]
    module = _module(detector, optimize_inference=optimize)
    keys = set(module.state_dict())
    _trainer(max_epochs=1).fit(module, loader, loader)
    _trainer().test(module, loader)
    _trainer().predict(module, loader)
    assert len(SEEN) == 9 and set(SEEN) == ({(False, True)} if optimize else {(True, False)})
    assert set(module.state_dict()) == keys and not module._eval_copy
    assert not detector.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert isinstance(detector.bn, nn.BatchNorm2d)


def test_auto_scale_lr_and_paramwise(loader: DataLoader) -> None:
    paramwise = ParamGroupRules(norm_decay_mult=0.0, custom_keys={"shift": PrefixRule(lr_mult=0.5)})
    module = _module(auto_scale_lr=True, batch_size=2, base_batch_size=16, paramwise=paramwise)
    trainer = _trainer(max_steps=1, accumulate_grad_batches=2, limit_val_batches=0)
    trainer.fit(module, loader)
    groups = {g["name"]: g for g in trainer.optimizers[0].param_groups}
    assert groups["default"]["lr"] == pytest.approx(0.02 * 2 * 2 / 16)  # 2 images x 1 device x 2 accumulated
    assert groups["shift:default"]["lr"] == pytest.approx(0.005 * 0.5)
    assert groups["norm"]["weight_decay"] == 0.0 and groups["default"]["weight_decay"] == pytest.approx(1e-4)


def test_paramwise_stored_without_target_still_builds(loader: DataLoader) -> None:
    """A checkpoint written before ``module.paramwise`` had a ``_target_`` stores it as a plain mapping."""
    stored = {"norm_decay_mult": 0.0, "bias_decay_mult": 1.0, "bias_lr_mult": 2.0, "custom_keys": {}}
    module = _module(paramwise=stored)
    assert module.paramwise == ParamGroupRules(norm_decay_mult=0.0, bias_lr_mult=2.0)
    trainer = _trainer(max_steps=1, limit_val_batches=0)
    trainer.fit(module, loader)
    groups = {g["name"]: (g["lr"], g["weight_decay"]) for g in trainer.optimizers[0].param_groups}
    assert groups == {"default": (0.02, 1e-4), "bias": (0.04, 1e-4), "norm": (0.02, 0.0)}


def test_checkpoint_carries_config_and_hparams(loader: DataLoader, tmp_path: Path) -> None:
    module = _module(print_tables=False, base_batch_size=8)
    module.lightdet_config = {"model": {"name": "fake"}}
    trainer = _trainer(max_steps=1, limit_val_batches=0)
    trainer.fit(module, loader)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    ckpt = torch.load(tmp_path / "m.ckpt", map_location="cpu", weights_only=False)
    assert ckpt[CONFIG_KEY] == {"model": {"name": "fake"}}
    assert ckpt["hyper_parameters"]["base_batch_size"] == 8 and "detector" not in ckpt["hyper_parameters"]
    reloaded = DetectionModule.load_from_checkpoint(
        tmp_path / "m.ckpt", detector=FakeDetector(), optimizer=module.optimizer_factory, weights_only=False
    )
    assert reloaded.lightdet_config == {"model": {"name": "fake"}} and reloaded.base_batch_size == 8
    assert torch.equal(reloaded.detector.shift, module.detector.shift)


class NoDefaultLr(torch.optim.Optimizer):
    def __init__(self, params: Any) -> None:
        super().__init__(params, {"momentum": 0.9})


def test_bad_configuration_is_named_at_construction() -> None:
    with pytest.raises(TypeError, match="NoDefaultLr has no default lr"):
        _module(optimizer=NoDefaultLr)
    with pytest.raises(TypeError, match="momentun"):  # a misspelt optimizer argument
        _module(optimizer=functools.partial(torch.optim.SGD, lr=0.02, momentun=0.9))
    with pytest.raises(ValueError, match="needs batch_size"):
        _module(auto_scale_lr=True)
    with pytest.raises(TypeError, match=r"paramwise must be a ParamGroupRules .* list: \['norm_decay"):
        _module(paramwise=["norm_decay_mult"])
    with pytest.raises(TypeError, match="unexpected keyword argument 'norm_decay'"):
        _module(paramwise={"norm_decay": 0.0})
    with pytest.raises(ValueError, match="no trainable parameters"):
        _module(FakeDetector().requires_grad_(False))


def test_loss_without_loss_keys_is_an_error(samples: list[DetSample]) -> None:
    class NoLoss(FakeDetector):
        def loss(self, batch: DetBatch) -> dict[str, Tensor]:
            return {"acc": torch.tensor(1.0)}

    with pytest.raises(ValueError, match=r"no key starting with 'loss' \(keys: \['acc'\]\)"):
        _module(NoLoss()).training_step(DetBatch.collate(samples[:2]), 0)


def test_adamw_weight_decay_default_is_kept() -> None:
    module = _module(optimizer=functools.partial(torch.optim.AdamW, lr=1e-3))
    optimizer = module.configure_optimizers()
    assert isinstance(optimizer, torch.optim.AdamW)
    assert all(math.isclose(g["weight_decay"], 0.01) for g in optimizer.param_groups)


class LossRecorder(L.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.losses.append(float(trainer.callback_metrics["train/loss"]))


# Seeded 6-step fits (2 epochs x 3 batches) of FakeDetector (shift starting at 0.5), produced with the code
# before the parameter-group rules, the optimizer's base values and the decay policies became objects
# (commit 61254c8, paramwise as a dict, policy as a string): the losses, the final groups and weights.
SEEDED_FITS = {
    "sgd_step_paramwise_auto_scale": (
        [2.0999999046325684, 2.096001625061035, 2.07141375541687, 2.0128350257873535, 2.0025107860565186,
         1.9867653846740723],
        [("shift:default", 0.0005, 0.00030000000000000003), ("default", 0.001, 0.0001), ("bias", 0.002, 0.0),
         ("norm", 0.001, 0.0)],
        {"shift": [0.4833325743675232] * 4, "conv.bias": [-0.011439246125519276, 0.4577748477458954],
         "conv.weight": [-0.004322524648159742, 0.30971479415893555, -0.47518378496170044,
                         -0.42489317059516907, -0.2223682552576065, 0.15482018887996674],
         "bn.weight": [1.0, 1.0], "bn.bias": [0.03332987427711487, 0.03332987427711487]},
    ),
    "adamw_default_decay_cosine": (
        [2.0999999046325684, 2.0999398231506348, 2.0717380046844482, 2.0257692337036133, 1.9935376644134521,
         1.9746513366699219],
        [("default", 0.001, 0.01), ("bias", 0.001, 0.01), ("norm", 0.001, 0.01)],
        # Only shift and bn.bias: the loss reads the BN output's mean, which is bn.bias, so the conv and
        # bn.weight gradients are zero but for rounding, and AdamW's normalised step turns that rounding (the
        # CPU's SIMD reduction order) into moves of up to lr.
        {"shift": [0.47709304094314575] * 4, "bn.bias": [0.022803859785199165] * 2},
    ),
}


def _seeded_fit_module(name: str) -> DetectionModule:
    if name == "sgd_step_paramwise_auto_scale":
        rules = ParamGroupRules(norm_decay_mult=0.0, bias_lr_mult=2.0, bias_decay_mult=0.0,
                                custom_keys={"shift": {"lr_mult": 0.5, "decay_mult": 3.0}})  # fmt: skip
        scheduler = functools.partial(build_warmup_scheduler, max_epochs=2, policy=StepDecay(milestones=[1]),
                                      warmup_iters=4, warmup_ratio=0.1)  # fmt: skip
        scaling = dict(auto_scale_lr=True, batch_size=2, base_batch_size=4)
        return _module(scheduler=scheduler, paramwise=rules, **scaling)
    cosine = CosineDecay(min_lr_ratio=0.1)
    scheduler = functools.partial(build_warmup_scheduler, policy=cosine, warmup_iters=2)
    return _module(optimizer=functools.partial(torch.optim.AdamW, lr=1e-2), scheduler=scheduler)


@pytest.fixture
def two_threads():
    """The pinned fits were recorded with 2 intra-op threads: AdamW's normalised steps amplify the reduction
    order of near-zero gradients, so the thread count (1 per xdist worker) must match."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("name", sorted(SEEDED_FITS))
def test_seeded_fit_is_unchanged(name: str, samples: list[DetSample], two_threads) -> None:
    torch.manual_seed(0)
    module = _seeded_fit_module(name)
    module.detector.shift.data.fill_(0.5)
    recorder = LossRecorder()
    trainer = _trainer(max_epochs=2, limit_train_batches=3, limit_val_batches=0, callbacks=[recorder])
    trainer.fit(module, DataLoader(samples, batch_size=2, collate_fn=DetBatch.collate))
    losses, groups, weights = SEEDED_FITS[name]
    assert recorder.losses == pytest.approx(losses, rel=1e-6)
    actual = [(g["name"], g["lr"], g["weight_decay"]) for g in trainer.optimizers[0].param_groups]
    assert actual == [(n, pytest.approx(lr), pytest.approx(decay)) for n, lr, decay in groups]
    for param, values in weights.items():
        final = module.detector.get_parameter(param).flatten().tolist()
        assert final == pytest.approx(values, rel=1e-5), param

"""EMA callback: the average's arithmetic, evaluation with the average, checkpoints and resuming."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from lightdet.engine import EMA, TRAIN_STATE_KEY, ema_momentum


class TinyModule(L.LightningModule):
    """A linear regressor with a BatchNorm (float running stats and an int64 buffer)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.bn = nn.BatchNorm1d(3)
        self.fc = nn.Linear(3, 1)
        self.val_weights: list[Tensor] = []

    def training_step(self, batch: list[Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        return ((self.fc(self.bn(x)) - y) ** 2).mean()

    def validation_step(self, batch: list[Tensor], batch_idx: int) -> None:
        self.val_weights.append(self.fc.weight.detach().clone())

    def test_step(self, batch: list[Tensor], batch_idx: int) -> None:
        self.validation_step(batch, batch_idx)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


def _loader() -> DataLoader:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 3, generator=g)
    return DataLoader(TensorDataset(x, x.sum(1, keepdim=True) * 2 + 1), batch_size=4, shuffle=False)


class RecordStepWeights(Callback):
    """The model's state after every optimizer step (before EMA's update in the callback order)."""

    def __init__(self) -> None:
        self.states: list[dict[str, Tensor]] = []
        self._step = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step != self._step:
            self._step = trainer.global_step
            self.states.append({k: v.detach().clone() for k, v in pl_module.state_dict().items()})


def _trainer(tmp_path: Path, callbacks: list[Callback], **kwargs) -> L.Trainer:
    defaults = dict(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path, num_sanity_val_steps=0,
    )  # fmt: skip
    return L.Trainer(callbacks=callbacks, **{**defaults, **kwargs})


def test_momentum_warms_up_to_its_floor() -> None:
    assert ema_momentum(1, 0.0002, None) == 0.0002
    assert ema_momentum(1, 0.0002, 2000.0) == pytest.approx(0.9998 * math.exp(-1 / 2000) + 0.0002)
    assert ema_momentum(10**6, 0.0002, 2000.0) == pytest.approx(0.0002)
    values = [ema_momentum(t, 0.01, 10.0) for t in range(1, 50)]
    assert all(a > b for a, b in zip(values, values[1:]))


@pytest.mark.parametrize("bad", [{"momentum": 0.0}, {"momentum": 1.5}, {"gamma": 0.0}])
def test_rejects_bad_arguments(bad: dict) -> None:
    with pytest.raises(ValueError, match="EMA"):
        EMA(**bad)


def test_average_updates_once_per_optimizer_step(tmp_path: Path) -> None:
    """With 2 accumulated batches, 4 batches make 2 optimizer steps and 2 updates of the average."""
    module, record, ema = TinyModule(), RecordStepWeights(), EMA(momentum=0.3, gamma=4.0)
    initial = {k: v.clone() for k, v in module.state_dict().items()}
    trainer = _trainer(tmp_path, [record, ema], max_epochs=1, accumulate_grad_batches=2,
                       enable_checkpointing=False, limit_val_batches=0)  # fmt: skip
    trainer.fit(module, train_dataloaders=_loader())
    assert len(record.states) == 2 and ema.ema_state is not None
    expected = initial
    for step, state in enumerate(record.states, start=1):
        m = ema_momentum(step, 0.3, 4.0)
        expected = {
            k: (1 - m) * expected[k] + m * v if v.is_floating_point() else v for k, v in state.items()
        }
    for key, value in expected.items():
        torch.testing.assert_close(ema.ema_state[key], value, rtol=1e-6, atol=1e-7)
    assert ema.ema_state["bn.num_batches_tracked"].item() == 4  # integer buffers are copied
    assert not torch.equal(ema.ema_state["fc.weight"], module.fc.weight)


def test_validation_sees_the_average_then_training_weights_return(tmp_path: Path) -> None:
    module, ema = TinyModule(), EMA(momentum=0.5, gamma=None)
    trainer = _trainer(tmp_path, [ema], max_epochs=1, enable_checkpointing=False)
    trainer.fit(module, train_dataloaders=_loader(), val_dataloaders=_loader())
    assert len(module.val_weights) == 4
    assert all(torch.equal(w, ema.ema_state["fc.weight"]) for w in module.val_weights)
    assert not torch.equal(module.fc.weight, ema.ema_state["fc.weight"])  # swapped back after validation


def _fit(tmp_path: Path, max_steps: int, ckpt_path: str | None = None) -> tuple[TinyModule, EMA, Path]:
    module, ema = TinyModule(), EMA(momentum=0.2, gamma=3.0)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", filename="last", save_top_k=1, monitor=None,
                           every_n_train_steps=1, enable_version_counter=False)  # fmt: skip
    trainer = _trainer(tmp_path, [ema, ckpt], max_steps=max_steps, limit_val_batches=0)
    trainer.fit(module, train_dataloaders=_loader(), ckpt_path=ckpt_path)
    return module, ema, tmp_path / "ckpt" / "last.ckpt"


def test_checkpoint_holds_the_average_and_resuming_continues_it(tmp_path: Path) -> None:
    # 4 batches per epoch: the interruption is at an epoch end, where Lightning resumes exactly.
    straight, straight_ema, _ = _fit(tmp_path / "a", max_steps=8)
    _, first_ema, ckpt = _fit(tmp_path / "b", max_steps=4)
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    torch.testing.assert_close(saved["state_dict"], first_ema.ema_state)
    assert not torch.equal(saved[TRAIN_STATE_KEY]["fc.weight"], saved["state_dict"]["fc.weight"])

    resumed, resumed_ema, _ = _fit(tmp_path / "c", max_steps=8, ckpt_path=str(ckpt))
    # The resumed run trained from the training weights and kept averaging: it equals the straight run.
    torch.testing.assert_close(resumed.state_dict(), straight.state_dict(), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(resumed_ema.ema_state, straight_ema.ema_state, rtol=1e-6, atol=1e-7)


def test_testing_a_checkpoint_evaluates_its_average_without_swapping(tmp_path: Path) -> None:
    _, first_ema, ckpt = _fit(tmp_path, max_steps=4)
    module, ema = TinyModule(), EMA(momentum=0.2, gamma=3.0)
    _trainer(tmp_path, [ema]).test(module, dataloaders=_loader(), ckpt_path=str(ckpt))
    assert ema.ema_state is None
    assert all(torch.equal(w, first_ema.ema_state["fc.weight"]) for w in module.val_weights)


def test_ema_callback_config_instantiates(compose_cfg) -> None:
    cfg = compose_cfg(["callbacks=ema"])
    assert "model_checkpoint" in cfg.callbacks and "last_checkpoint" in cfg.callbacks
    callback = instantiate(cfg.callbacks.ema)
    assert isinstance(callback, EMA) and callback.momentum == 0.0002 and callback.gamma == 2000
    assert "ema" not in compose_cfg([]).callbacks  # off by default

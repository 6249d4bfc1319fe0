"""The LightningModule that trains a detector and evaluates it with a COCO evaluator.

It owns what Lightning does not: summing and logging the detector's losses, the parameter groups and the
per-iteration lr schedule, and the evaluation loop (process -> gather across ranks -> compute -> log).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from lightdet.engine.optim import ParamGroup, ParamGroupRules, build_optimizer, scale_lr
from lightdet.evaluation import CocoEvaluator, EvalResult
from lightdet.models.folding import optimize_for_inference
from lightdet.structures import DetBatch, Detections

__all__ = ["CONFIG_KEY", "DetectionModule", "NonFiniteLossError"]

#: Checkpoint key under which the composed run config is stored (see ``DetectionModule.lightdet_config``).
CONFIG_KEY = "lightdet_config"


class NonFiniteLossError(FloatingPointError):
    """A training loss became NaN or infinite."""


def freeze_submodules(model: nn.Module, names: Sequence[str]) -> list[nn.Module]:
    """Stops the gradients of the submodules ``names`` of ``model`` and puts them in eval mode; returns them.

    Lightning keeps each submodule's mode across validation, so eval mode set here lasts through ``fit``.
    """
    frozen = []
    for name in names:
        try:
            module = model.get_submodule(name)
        except AttributeError:
            parts = ", ".join(n for n, _ in model.named_children())
            raise ValueError(f"freeze: the detector has no submodule {name!r}; its parts are: {parts}") from None
        module.requires_grad_(False)
        module.eval()
        frozen.append(module)
    return frozen


def _total_loss(losses: Mapping[str, Tensor]) -> Tensor:
    """The sum of the ``loss*`` entries (other entries, e.g. ``acc``, are only logged)."""
    terms = [v for k, v in losses.items() if k.startswith("loss")]
    if not terms:
        raise ValueError(f"detector.loss() returned no key starting with 'loss' (keys: {sorted(losses)})")
    return torch.stack([t.float() for t in terms]).sum()


class DetectionModule(L.LightningModule):
    """Trains ``detector`` with ``optimizer``/``scheduler``; evaluates it with ``evaluator``.

    Args:
        detector: an ``nn.Module`` with ``loss(batch: DetBatch) -> dict[str, Tensor]`` (keys starting with
            ``loss`` are summed; other scalars are logged) and ``predict(batch) -> list[Detections]``.
        optimizer: called with the parameter groups, returns the optimizer: a partial of an optimizer
            class (Hydra ``_partial_: true``). Its lr and weight decay (bound, else the class's defaults) are
            the base values that the groups' multipliers scale (:func:`~lightdet.engine.build_optimizer`).
        scheduler: a partial called as ``scheduler(optimizer, iters_per_epoch=N[, max_epochs=E])``
            returning a per-iteration scheduler (e.g. :func:`~lightdet.engine.build_warmup_scheduler`);
            ``max_epochs`` is passed from the trainer only when the partial does not bind it.
            None: a constant lr.
        evaluator: accumulates validation/test detections; None: validation only runs ``predict``.
        paramwise: splits the parameters into groups with lr and decay multipliers: a
            :class:`~lightdet.engine.ParamGroupRules`, or any callable ``model -> list of group dicts`` with
            ``params``, ``lr_mult`` and ``decay_mult``. None: ``ParamGroupRules()`` (one multiplier of 1).
            A mapping (the config stored in checkpoints written before the node had a ``_target_``) is
            given to ``ParamGroupRules(**paramwise)``.
        auto_scale_lr: scale the lr linearly by the global batch
            (``batch_size * world_size * accumulate_grad_batches``) against ``base_batch_size``.
        base_batch_size: the global batch the configured lr was published for.
        batch_size: the per-device training batch size (required by ``auto_scale_lr``).
        print_tables: print the COCO and per-class tables after each evaluation (rank zero).
        freeze: names of detector submodules (``backbone``, ``neck``, ``rpn_head``, ``backbone.layer1`` ...)
            whose parameters get no gradient and whose norm layers stay in eval mode, e.g. to fine-tune only
            the heads; they are left out of the optimizer.
        optimize_inference: validation, test and predict run an eval-mode copy of the detector rewritten by
            :func:`~lightdet.models.optimize_for_inference` (BatchNorm folded into the convs, channels-last
            weights), made once per evaluation epoch; the trained detector is not changed.

    Attributes:
        last_eval: the last validation/test :class:`~lightdet.evaluation.EvalResult` (None before any).
        lightdet_config: a plain dict (the composed run config) stored in every checkpoint under
            :data:`CONFIG_KEY` when set.
    """

    def __init__(
        self,
        detector: nn.Module,
        optimizer: Callable[..., Optimizer],
        scheduler: Callable[..., LRScheduler] | None = None,
        evaluator: CocoEvaluator | None = None,
        *,
        paramwise: Callable[[nn.Module], list[ParamGroup]] | Mapping[str, Any] | None = None,
        auto_scale_lr: bool = False,
        base_batch_size: int = 16,
        batch_size: int | None = None,
        print_tables: bool = True,
        freeze: Sequence[str] = (),
        optimize_inference: bool = True,
    ) -> None:
        super().__init__()
        if isinstance(paramwise, Mapping):
            paramwise = ParamGroupRules(**paramwise)
        if paramwise is not None and not callable(paramwise):
            raise TypeError(
                f"paramwise must be a ParamGroupRules (a yaml node with `_target_: "
                f"lightdet.engine.ParamGroupRules`), got {type(paramwise).__name__}: {paramwise!r}"
            )
        if auto_scale_lr and not batch_size:
            raise ValueError("auto_scale_lr=True needs batch_size, the per-device training batch size")
        # Built objects are not hyperparameters: the CLI stores the composed config (lightdet_config).
        self.save_hyperparameters(ignore=["detector", "optimizer", "scheduler", "evaluator", "paramwise"])
        self.detector = detector
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.evaluator = evaluator
        self.paramwise = paramwise if paramwise is not None else ParamGroupRules()
        self.auto_scale_lr = auto_scale_lr
        self.base_batch_size = base_batch_size
        self.batch_size = batch_size
        self.print_tables = print_tables
        self.frozen = freeze_submodules(detector, freeze)
        self.optimize_inference = optimize_inference
        # The evaluation epoch's detector (the copy, or the detector itself) is held outside the module tree: a
        # copy must not enter the state dict or checkpoints.
        self._eval_copy: list[nn.Module] = []
        # A trial build fails at construction, not after the first epoch's data loading: a bad optimizer
        # argument, an optimizer without a default lr, a model with nothing left to train.
        build_optimizer(optimizer, detector, self.paramwise)
        self.last_eval: EvalResult | None = None
        self.lightdet_config: dict[str, Any] | None = None

    def train(self, mode: bool = True) -> DetectionModule:
        """Sets the mode; frozen submodules stay in eval mode (their BatchNorm statistics do not move)."""
        super().train(mode)
        for module in self.frozen:
            module.eval()
        return self

    def forward(self, batch: DetBatch) -> list[Detections]:
        return self.detector.predict(batch)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        if isinstance(batch, DetBatch):
            return batch.to(device, non_blocking=device.type == "cuda")
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    # -- training -------------------------------------------------------------------------------------
    def training_step(self, batch: DetBatch, batch_idx: int) -> Tensor:
        losses = self.detector.loss(batch)
        total = _total_loss(losses)
        if not torch.isfinite(total):
            raise self._non_finite_error(losses, batch, batch_idx)
        logs = {f"train/{k}": v.detach() if isinstance(v, Tensor) else v for k, v in losses.items()}
        logs["train/loss"] = total.detach()
        self.log_dict(logs, batch_size=len(batch), on_step=True, on_epoch=False)
        self.log("train/lr", self.current_lr(), batch_size=len(batch), on_step=True, on_epoch=False)
        return total

    def current_lr(self) -> float:
        """The base lr now (after scaling, warmup, schedule); a group's lr is this times its ``lr_mult``."""
        groups = self.optimizers().optimizer.param_groups  # type: ignore[union-attr]
        group = next((g for g in groups if g.get("lr_mult", 1.0) > 0), groups[0])
        return float(group["lr"]) / float(group.get("lr_mult", 1.0) or 1.0)

    def _non_finite_error(self, losses: Mapping[str, Tensor], batch: DetBatch, batch_idx: int) -> Exception:
        bad = {
            k: float(v.detach().sum())
            for k, v in losses.items()
            if k.startswith("loss") and not torch.isfinite(v).all()
        }
        image_ids = [m.image_id for m in batch.metas]
        where = f"epoch {self.current_epoch}, batch {batch_idx}, image ids {image_ids}"
        return NonFiniteLossError(
            f"non-finite loss at global step {self.global_step} ({where}): {bad}. "
            "Training on it would destroy the weights. "
            f"Common causes: an lr too high for the batch (current lr {self.current_lr():.4g}; lower "
            "optimizer.lr, or set module.auto_scale_lr=true for a smaller batch), a warmup too short "
            "(schedule.warmup_iters), or zero-size/degenerate boxes in the data (`lightdet-data check`); "
            "trainer.gradient_clip_val also helps."
        )

    # -- evaluation -----------------------------------------------------------------------------------
    def inference_detector(self) -> nn.Module:
        """The detector that validation, test and predict run: with ``optimize_inference``, an optimised copy
        (made on the first call of an evaluation epoch, after EMA has swapped its weights in); else the
        detector itself. A detector without convolutions (an exported file's runner) is used as it is. The
        choice is made once per epoch, not per batch."""
        if not self._eval_copy:
            convs = any(isinstance(m, nn.Conv2d) for m in self.detector.modules())
            use_copy = self.optimize_inference and convs
            self._eval_copy.append(optimize_for_inference(copy.deepcopy(self.detector)) if use_copy else self.detector)
        return self._eval_copy[0]

    def on_validation_epoch_start(self) -> None:
        self._eval_copy.clear()
        if self.evaluator is not None:
            self.evaluator.reset()

    def on_test_epoch_start(self) -> None:
        self.on_validation_epoch_start()

    def on_predict_epoch_start(self) -> None:
        self._eval_copy.clear()

    def validation_step(self, batch: DetBatch, batch_idx: int) -> None:
        self._evaluate_batch(batch)

    def test_step(self, batch: DetBatch, batch_idx: int) -> None:
        self._evaluate_batch(batch)

    def predict_step(self, batch: DetBatch, batch_idx: int, dataloader_idx: int = 0) -> list[Detections]:
        return self.inference_detector().predict(batch)

    def on_validation_epoch_end(self) -> None:
        self._eval_copy.clear()
        self._finish_evaluation("val")

    def on_test_epoch_end(self) -> None:
        self._eval_copy.clear()
        self._finish_evaluation("test")

    def on_predict_epoch_end(self) -> None:
        self._eval_copy.clear()

    def _evaluate_batch(self, batch: DetBatch) -> None:
        detections = self.inference_detector().predict(batch)
        if self.evaluator is not None:
            self.evaluator.process(detections, batch.metas)

    def _finish_evaluation(self, stage: str) -> None:
        """Gathers, computes and logs ``<stage>/<metric>``; sanity checks compute but log and keep nothing."""
        if self.evaluator is None:
            return
        self.evaluator.sync()
        if self.evaluator.num_images == 0:
            rank_zero_warn(f"{stage}: the evaluator received no images; no metrics are logged")
            return
        result = self.evaluator.compute()
        self.evaluator.reset()
        if self.trainer.sanity_checking:
            return
        self.last_eval = result
        for name, value in result.metrics.items():
            # Every rank computed the same value from the gathered results; "max" keeps it exact.
            self.log(f"{stage}/{name}", value, sync_dist=True, reduce_fx="max")
        if self.print_tables:
            title = f"{stage} epoch {self.current_epoch}: {result.num_images} images"
            self.print(f"\n{title}\n{result.render()}")

    # -- optimisation ---------------------------------------------------------------------------------
    def configure_optimizers(self) -> Optimizer | dict[str, Any]:
        scale = self._scaled_lr if self.auto_scale_lr else None
        optimizer = build_optimizer(self.optimizer_factory, self.detector, self.paramwise, scale=scale)
        if self.scheduler_factory is None:
            return optimizer
        iters_per_epoch = self._iters_per_epoch()
        kwargs: dict[str, Any] = {"iters_per_epoch": iters_per_epoch}
        if "max_epochs" not in getattr(self.scheduler_factory, "keywords", {}):
            kwargs["max_epochs"] = self._max_epochs(iters_per_epoch)
        scheduler = self.scheduler_factory(optimizer, **kwargs)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }

    def _scaled_lr(self, lr: float) -> float:
        assert self.batch_size is not None  # checked in __init__
        world, accumulate = self.trainer.world_size, self.trainer.accumulate_grad_batches
        global_batch = self.batch_size * world * accumulate
        scaled = scale_lr(lr, global_batch, self.base_batch_size)
        rank_zero_info(
            f"auto_scale_lr: lr {lr:g} x global batch {global_batch} ({self.batch_size} per device x {world} "
            f"devices x {accumulate} accumulated) / {self.base_batch_size} = {scaled:g}"
        )
        return scaled

    def _iters_per_epoch(self) -> int:
        """Optimizer steps per epoch (after ``limit_train_batches`` and gradient accumulation)."""
        trainer = self.trainer
        total = trainer.estimated_stepping_batches  # sets up the train dataloader when needed
        batches = trainer.num_training_batches
        if math.isfinite(batches) and batches > 0:
            return max(1, math.ceil(batches / trainer.accumulate_grad_batches))
        if math.isfinite(total) and trainer.max_epochs and trainer.max_epochs > 0:
            return max(1, int(total) // trainer.max_epochs)
        raise ValueError(
            "cannot derive the scheduler's iters_per_epoch: the train dataloader has no length and "
            "trainer.max_epochs/max_steps do not bound training"
        )

    def _max_epochs(self, iters_per_epoch: int) -> int:
        trainer = self.trainer
        if trainer.max_epochs is not None and trainer.max_epochs > 0:
            return int(trainer.max_epochs)
        if trainer.max_steps > 0:
            return max(1, math.ceil(trainer.max_steps / iters_per_epoch))
        raise ValueError(
            "the scheduler needs max_epochs: set schedule.max_epochs, trainer.max_epochs or trainer.max_steps"
        )

    # -- checkpoints ----------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.lightdet_config is not None:
            checkpoint[CONFIG_KEY] = self.lightdet_config

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.lightdet_config is None and CONFIG_KEY in checkpoint:
            self.lightdet_config = checkpoint[CONFIG_KEY]

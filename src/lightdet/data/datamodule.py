"""The LightningDataModule: built datasets in, DataLoaders of :class:`~lightdet.structures.DetBatch` out."""

from __future__ import annotations

import os
from functools import partial
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.seed import pl_worker_init_function
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, SequentialSampler

from lightdet.data.datasets.base import PipelineSpec
from lightdet.data.datasets.wrappers import set_pipeline
from lightdet.data.samplers import GroupedBatchSampler, aspect_ratio_group_ids
from lightdet.data.streams import seed_stream, set_stream_rank
from lightdet.data.workers import NumWorkers, check_num_workers, resolve_num_workers, usable_cpus
from lightdet.structures import DetBatch, DetSample

__all__ = ["DetDataModule", "init_train_worker"]


def init_train_worker(worker_id: int, rank: int) -> None:
    """The train loader's ``worker_init_fn``: the augmentation stream's rank (:mod:`lightdet.data.streams`;
    a spawned worker does not inherit it), then Lightning's worker seeding when
    ``seed_everything(workers=True)`` asked for it (Lightning adds its own only to loaders without one)."""
    set_stream_rank(rank)
    if int(os.environ.get("PL_SEED_WORKERS", 0)):
        pl_worker_init_function(worker_id, rank)


class DetDataModule(L.LightningDataModule):
    """Serves train / val / test datasets as DataLoaders of ``DetBatch``.

    Args:
        train, val, test: built datasets of ``DetSample`` (Hydra instantiates them); ``test``
            defaults to ``val``.
        batch_size: training images per batch (per process under DDP).
        val_batch_size: images per batch for validation and test.
        num_workers: DataLoader worker processes per training process; 0 loads in the main process;
            ``"auto"`` resolves, when a loader is built, to ``max(0, min(8, usable CPUs // devices - 1))``
            with the trainer's devices (:mod:`lightdet.data.workers`).
        pin_memory: pin batches (only when CUDA is available).
        persistent_workers: keep workers alive between epochs (ignored with ``num_workers=0``).
        group_by_aspect_ratio: training batches of all-landscape or all-portrait images
            (:class:`~lightdet.data.samplers.GroupedBatchSampler`); the train dataset must have
            ``aspect_ratios()``.
        shuffle: shuffle the training set each epoch.

    Distributed training: under a multi-process strategy the training index sampler is a
    ``DistributedSampler`` built here with ``shuffle`` (Lightning's own would always shuffle), seeded
    like Lightning's (``PL_GLOBAL_SEED``); Lightning keeps it and calls ``set_epoch`` each epoch. With
    ``group_by_aspect_ratio`` each rank groups its own shard. Validation
    and test loaders are plain and get Lightning's padded ``DistributedSampler``; the evaluator removes
    the repeated images.

    Augmentation randomness: the train loader mixes the trainer's global rank into the augmentation
    stream (:mod:`lightdet.data.streams`) in the main process and in every worker, so DDP ranks and
    workers draw different augmentations, and runs repeat under a seed.

    Pipeline switch: :meth:`switch_train_pipeline` schedules another train pipeline from an epoch on;
    the train loader built for that epoch or a later one (a resumed run's first included) applies it
    with :meth:`set_train_pipeline`, which replaces the train dataset's pipeline through any wrappers.
    :class:`lightdet.engine.PipelineSwitch` schedules it and has the trainer build the train loader
    again at that epoch, so that new worker processes (persistent or not) load with it.
    """

    def __init__(
        self,
        *,
        train: Dataset[DetSample] | None = None,
        val: Dataset[DetSample] | None = None,
        test: Dataset[DetSample] | None = None,
        batch_size: int = 2,
        val_batch_size: int = 1,
        num_workers: NumWorkers = "auto",
        pin_memory: bool = True,
        persistent_workers: bool = True,
        group_by_aspect_ratio: bool = True,
        shuffle: bool = True,
    ) -> None:
        super().__init__()
        if batch_size < 1 or val_batch_size < 1:
            raise ValueError(
                f"DetDataModule: need batch_size >= 1 and val_batch_size >= 1, got {batch_size}, {val_batch_size}"
            )
        self.train, self.val = train, val
        self.test = test if test is not None else val
        self.batch_size, self.val_batch_size = batch_size, val_batch_size
        self.num_workers = check_num_workers(num_workers, "DetDataModule")
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.group_by_aspect_ratio = group_by_aspect_ratio
        self.shuffle = shuffle
        self._switch: tuple[int, PipelineSpec] | None = None
        self._told_workers = False

    @property
    def class_names(self) -> list[str]:
        """The class names of the train dataset (else of val / test), in label order."""
        for ds in (self.train, self.val, self.test):
            if ds is not None and hasattr(ds, "class_names"):
                return list(ds.class_names)
        raise AttributeError("DetDataModule: none of its datasets has `class_names`")

    def switch_train_pipeline(self, epoch: int, pipeline: PipelineSpec) -> None:
        """Loads the train dataset with ``pipeline`` from epoch ``epoch`` (0-based) on.

        The train loader built for that epoch or a later one applies it; the trainer must build the
        loader again at ``epoch`` (:class:`lightdet.engine.PipelineSwitch` has it do so).
        """
        if int(epoch) < 0:
            raise ValueError(f"DetDataModule.switch_train_pipeline: epoch must be >= 0, got {epoch}")
        self._switch = (int(epoch), pipeline)

    def _epoch_to_load(self) -> int:
        """The epoch the train loader is built for: the number of epochs the trainer has run (its
        ``current_epoch`` lags by one when a run resumes from a checkpoint written at an epoch's end)."""
        fit_loop = getattr(self.trainer, "fit_loop", None)
        return 0 if fit_loop is None else int(fit_loop.epoch_progress.current.processed)

    def _apply_switch(self) -> None:
        if self._switch is None or self._epoch_to_load() < self._switch[0]:
            return
        epoch, pipeline = self._switch
        rank_zero_info(f"epoch {self._epoch_to_load()}: the train pipeline is now the one from epoch {epoch} on")
        self.set_train_pipeline(pipeline)
        self._switch = None

    def set_train_pipeline(self, pipeline: PipelineSpec) -> None:
        """Makes the train dataset run ``pipeline`` (a list of steps) from now on.

        Workers of a loader built before keep their own copy of the dataset: build the train loader
        again for them to see it (:class:`lightdet.engine.PipelineSwitch` has the trainer do so).
        """
        set_pipeline(self._require(self.train, "train"), pipeline)

    def loader_workers(self) -> int:
        """The worker count of the loaders: ``num_workers``, with ``"auto"`` resolved for the trainer's devices
        (one device without a trainer)."""
        return resolve_num_workers(self.num_workers, int(getattr(self.trainer, "num_devices", None) or 1))

    def _loader(self, dataset: Dataset[DetSample], **kwargs: Any) -> DataLoader[DetBatch]:
        workers = self.loader_workers()
        if self.num_workers == "auto" and not self._told_workers:
            rank_zero_info(f"num_workers=auto: {workers} DataLoader workers per training process ({usable_cpus()} "
                           "usable CPUs, max(0, min(8, CPUs // devices - 1)))")
            self._told_workers = True
        return DataLoader(
            dataset,
            num_workers=workers,
            collate_fn=DetBatch.collate,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.persistent_workers and workers > 0,
            **kwargs,
        )

    @staticmethod
    def _require(dataset: Dataset[DetSample] | None, split: str) -> Dataset[DetSample]:
        if dataset is None:
            fallback = " and no val dataset to default to" if split == "test" else ""
            raise ValueError(
                f"DetDataModule: no {split} dataset was given{fallback} (dataset.datamodule.{split} is null)"
            )
        return dataset

    def _distributed_sampler(self, dataset: Dataset[DetSample]) -> DistributedSampler[int] | None:
        """This rank's shard sampler when training runs in several processes, else ``None``."""
        trainer = self.trainer
        kwargs = getattr(trainer, "distributed_sampler_kwargs", None) if trainer is not None else None
        if not kwargs or kwargs.get("num_replicas", 1) <= 1:
            return None
        seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
        return DistributedSampler(dataset, shuffle=self.shuffle, seed=seed, **kwargs)  # type: ignore[arg-type]

    def train_dataloader(self) -> DataLoader[DetBatch]:
        dataset = self._require(self.train, "train")
        self._apply_switch()
        rank = self.trainer.global_rank if self.trainer is not None else 0
        set_stream_rank(rank)
        seed_stream(torch.initial_seed(), self._epoch_to_load())  # steps run here when num_workers=0
        seeding = {"worker_init_fn": partial(init_train_worker, rank=rank)}
        distributed = self._distributed_sampler(dataset)
        if not self.group_by_aspect_ratio:
            if distributed is not None:
                return self._loader(dataset, batch_size=self.batch_size, sampler=distributed, **seeding)
            return self._loader(dataset, batch_size=self.batch_size, shuffle=self.shuffle, **seeding)
        if not hasattr(dataset, "aspect_ratios"):
            raise TypeError(
                f"DetDataModule: group_by_aspect_ratio needs the train dataset to have aspect_ratios(); "
                f"{type(dataset).__name__} has not (set group_by_aspect_ratio=false)"
            )
        sampler = distributed
        if sampler is None:
            sampler = RandomSampler(dataset) if self.shuffle else SequentialSampler(dataset)
        group_ids = aspect_ratio_group_ids(dataset.aspect_ratios())
        batches = GroupedBatchSampler(sampler, group_ids, self.batch_size)
        return self._loader(dataset, batch_sampler=batches, **seeding)

    def val_dataloader(self) -> DataLoader[DetBatch]:
        return self._loader(self._require(self.val, "val"), batch_size=self.val_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader[DetBatch]:
        return self._loader(self._require(self.test, "test"), batch_size=self.val_batch_size, shuffle=False)

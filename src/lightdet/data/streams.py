"""The random stream of the augmentation steps: one generator per process, distinct per rank and worker.

Steps of :mod:`lightdet.data.augment`, :mod:`lightdet.data.photometric` and :mod:`lightdet.data.mix`
draw every random number from :func:`augment_generator`, a ``torch.Generator`` of this process seeded
from the pair ``(torch.initial_seed(), rank)``:

* ``torch.initial_seed()`` follows the run's seed: ``seed_everything(seed)`` in the main process; in a
  DataLoader worker, the base seed the loader drew from the main process's generator plus the worker
  id (or what Lightning's worker seeding made of it). Under a seed, runs repeat; workers differ.
* ``rank`` is set by :class:`~lightdet.data.DetDataModule` (:func:`set_stream_rank`) in the main process
  and in each worker. DDP ranks are seeded alike, so without it two ranks would draw the same
  augmentations (with ``num_workers=0``, or workers whose base seeds came from identically seeded
  generators).

The generator is re-seeded whenever that pair changes (a new worker, a ``torch.manual_seed`` with
another seed), so steps hold no random state of their own and a pipeline pickles into workers as plain
objects. :func:`seed_stream` restarts it explicitly: the datamodule does so each time it builds a train
loader (from the run's seed and the epoch), so that steps run in the main process (``num_workers=0``)
repeat too when one process trains twice with the same seed.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "augment_generator",
    "chance",
    "randint",
    "seed_stream",
    "set_stream_rank",
    "stream_rank",
    "uniform",
]

_rank = 0
_key: tuple[int, int] | None = None
_generator: torch.Generator | None = None


def set_stream_rank(rank: int) -> None:
    """Sets the process's rank, mixed into the augmentation stream's seed (the global rank under DDP)."""
    global _rank
    if int(rank) < 0:
        raise ValueError(f"set_stream_rank: rank must be >= 0, got {rank}")
    _rank = int(rank)


def stream_rank() -> int:
    """The rank set by :func:`set_stream_rank` (0 when none was)."""
    return _rank


def _generator_from(entropy: list[int]) -> torch.Generator:
    seed = int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0])
    return torch.Generator().manual_seed(seed)


def seed_stream(*entropy: int) -> None:
    """Restarts this process's augmentation stream from ``entropy`` (non-negative integers) and the rank."""
    global _key, _generator
    _generator = _generator_from([int(e) for e in entropy] + [_rank])
    _key = (torch.initial_seed(), _rank)


def augment_generator() -> torch.Generator:
    """This process's augmentation generator, re-seeded when ``(torch.initial_seed(), rank)`` changes."""
    global _key, _generator
    key = (torch.initial_seed(), _rank)
    if _generator is None or key != _key:
        _generator = _generator_from(list(key))
        _key = key
    return _generator


def uniform(low: float, high: float) -> float:
    """A float drawn uniformly from ``[low, high)``."""
    return float(low) + (float(high) - float(low)) * float(torch.rand((), generator=augment_generator()))


def randint(low: int, high: int) -> int:
    """An integer drawn uniformly from ``[low, high]`` (both ends included)."""
    if high < low:
        raise ValueError(f"randint: empty range [{low}, {high}]")
    return int(torch.randint(int(low), int(high) + 1, (), generator=augment_generator()))


def chance(prob: float) -> bool:
    """True with probability ``prob``."""
    return float(torch.rand((), generator=augment_generator())) < prob

"""How many DataLoader worker processes ``num_workers="auto"`` starts, and the CPUs this process may use.

The rule, per training process::

    num_workers = max(0, min(8, usable_cpus // devices - 1))

``usable_cpus`` is the CPUs this process may run on (``os.sched_getaffinity``, which honours ``taskset``,
cgroup cpusets and SLURM's ``--cpus-per-task``; ``os.cpu_count()`` where it is missing). ``devices`` is the
number of training processes on this machine (the trainer's devices): they share the CPUs, and each
keeps one core for itself, which runs the training step and collates the batches its workers send.
More than 8 workers rarely help one GPU and each costs memory (its own copy of the pipeline and Python
heap). A 2-core machine gets 1 worker, a 16-core node 8 for one GPU and 1 for eight.

``scripts/bench/data_cache.py`` measures images/s for several worker counts on a machine.
"""

from __future__ import annotations

import os
from typing import Literal

__all__ = [
    "MAX_AUTO_WORKERS", "NumWorkers", "auto_num_workers", "check_num_workers", "resolve_num_workers", "usable_cpus",
]

MAX_AUTO_WORKERS = 8

NumWorkers = int | Literal["auto"]
"""A ``num_workers`` setting: a count (0 loads in the training process) or ``"auto"`` (:func:`auto_num_workers`)."""


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask where the platform has one)."""
    affinity = getattr(os, "sched_getaffinity", None)
    if affinity is not None:
        return max(1, len(affinity(0)))
    return max(1, os.cpu_count() or 1)


def auto_num_workers(devices: int = 1, cpus: int | None = None) -> int:
    """``max(0, min(8, cpus // devices - 1))`` (see the module docstring); ``cpus`` defaults to
    :func:`usable_cpus`."""
    cpus = usable_cpus() if cpus is None else int(cpus)
    return max(0, min(MAX_AUTO_WORKERS, cpus // max(1, int(devices)) - 1))


def check_num_workers(value: object, owner: str) -> NumWorkers:
    """``value`` when it is an int >= 0 or ``"auto"``; else ``ValueError`` naming ``owner``."""
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return value  # type: ignore[return-value]
    raise ValueError(f"{owner}: num_workers must be an integer >= 0 or 'auto', got {value!r}")


def resolve_num_workers(value: NumWorkers, devices: int = 1) -> int:
    """The worker count ``value`` stands for: itself, or :func:`auto_num_workers` for ``"auto"``."""
    return auto_num_workers(devices) if value == "auto" else int(value)

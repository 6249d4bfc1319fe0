"""``num_workers="auto"``: ``max(0, min(8, usable CPUs // devices - 1))`` per training process."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lightdet.data import DetDataModule
from lightdet.data import workers as workers_module
from lightdet.data.workers import auto_num_workers, resolve_num_workers, usable_cpus


@pytest.mark.parametrize(("cpus", "devices", "expected"), [
    (1, 1, 0),    # one core: load in the training process
    (2, 1, 1),    # a 2-core machine: one worker beside the training process
    (4, 1, 3),
    (16, 1, 8),   # capped at 8
    (16, 8, 1),   # eight GPUs share 16 cores: 2 each, one for the training process
    (96, 8, 8),
    (4, 8, 0),    # more processes than cores
])
def test_auto_rule(cpus: int, devices: int, expected: int) -> None:
    assert auto_num_workers(devices, cpus=cpus) == expected


def test_usable_cpus_follow_the_affinity_mask(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers_module.os, "sched_getaffinity", lambda pid: {0, 3, 5}, raising=False)
    monkeypatch.setattr(workers_module.os, "cpu_count", lambda: 64)
    assert usable_cpus() == 3
    assert auto_num_workers(1) == 2


def test_usable_cpus_without_an_affinity_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(workers_module.os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(workers_module.os, "cpu_count", lambda: 6)
    assert usable_cpus() == 6


def test_a_count_is_kept_and_auto_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers_module, "usable_cpus", lambda: 12)
    assert resolve_num_workers(3, devices=4) == 3
    assert resolve_num_workers("auto", devices=4) == 2


def test_datamodule_resolves_auto_with_the_trainers_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers_module, "usable_cpus", lambda: 16)
    dm = DetDataModule(train=[], val=[], num_workers="auto")
    assert dm.num_workers == "auto" and dm.loader_workers() == 8  # no trainer: one device
    dm.trainer = SimpleNamespace(num_devices=8)
    assert dm.loader_workers() == 1
    loader = dm.val_dataloader()
    assert loader.num_workers == 1 and loader.persistent_workers
    assert DetDataModule(val=[], num_workers=0).val_dataloader().persistent_workers is False


@pytest.mark.parametrize("value", [-1, "many", 1.5, True])
def test_other_worker_settings_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match=r"DetDataModule: num_workers must be an integer >= 0 or 'auto', got"):
        DetDataModule(num_workers=value)  # type: ignore[arg-type]

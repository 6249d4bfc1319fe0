"""docs/tutorials/5_runtime.md: its optimizers, parameter-wise settings, schedules (a decay policy of the
user's own included) and lr scaling work as documented.

The tutorial's files (``my_project/optim.py``, ``my_configs/...``) are written from the markdown, as
``tests/test_docs.py`` writes them, into a temp directory on ``sys.path``. Each documented command's config is
composed and its ``module`` node instantiated around a tiny model, and the optimizer comes from
``DetectionModule.configure_optimizers``, the path a training run takes.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from torch.optim import Optimizer

from lightdet.engine import DetectionModule
from test_docs import _commands
from tutorial_helpers import compose_command, user_project

DOC = Path(__file__).resolve().parents[1] / "docs" / "tutorials" / "5_runtime.md"
COMMANDS = [c for c in _commands(DOC) if c.startswith("lightdet-train")]
OPTIMIZER_COMMANDS = [c for c in COMMANDS if "optimizer" in c or "paramwise" in c]
PARAMWISE_COMMANDS = [c for c in COMMANDS if "custom_keys.backbone" in c or "experiment=sgdw_paramwise" in c]

# The tutorial's table for its paramwise example (lr 0.02, weight decay 1e-3): name -> (lr, weight decay).
DOCUMENTED_GROUPS = {
    "backbone.0.weight": (0.002, 0.0),  # backbone norm
    "backbone.0.bias": (0.002, 0.0),
    "backbone.1.weight": (0.002, 1e-3),  # backbone conv weight
    "backbone.1.bias": (0.002, 0.0),  # backbone bias
    "neck.weight": (0.02, 0.0),  # other norm
    "neck.bias": (0.02, 0.0),
    "roi_head.weight": (0.02, 1e-3),  # other weight
    "roi_head.bias": (0.02, 0.0),  # other bias
}


class TinyDetector(nn.Module):
    """Parameters named like a detector's: a backbone BatchNorm + conv, a GroupNorm "neck", a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3))
        self.neck = nn.GroupNorm(2, 4)
        self.roi_head = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.roi_head(self.neck(self.backbone(x).relu()).mean((2, 3)))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The tutorial's ``my_project`` and ``my_configs`` in the working directory, importable."""
    yield from user_project(DOC, tmp_path, monkeypatch)


def _module(cfg: DictConfig, model: nn.Module) -> DetectionModule:
    """The run's ``module`` node around ``model`` (no schedule, no evaluator: only the optimizer is built)."""
    return instantiate(cfg.module, detector=model, scheduler=None, evaluator=None, _convert_="all")


def _step(model: TinyDetector, optimizer: Optimizer, seed: int) -> None:
    optimizer.zero_grad()
    model(torch.randn(2, 3, 6, 6, generator=torch.Generator().manual_seed(seed))).square().sum().backward()
    optimizer.step()


def test_tutorial_has_the_documented_examples() -> None:
    assert len(OPTIMIZER_COMMANDS) >= 6 and len(PARAMWISE_COMMANDS) == 2
    assert any("auto_scale_lr=true dataset.batch_size=2" in c for c in COMMANDS)


@pytest.mark.parametrize("command", OPTIMIZER_COMMANDS, ids=[c[15:85] for c in OPTIMIZER_COMMANDS])
def test_documented_optimizer_is_built_and_steps(project: Path, command: str) -> None:
    cfg = compose_command(command)
    torch.manual_seed(0)
    model = TinyDetector()
    optimizer = _module(cfg, model).configure_optimizers()
    assert type(optimizer) is get_class(cfg.optimizer._target_)
    bound = {k: v for k, v in OmegaConf.to_container(cfg.optimizer).items() if not k.startswith("_")}
    assert {k: optimizer.defaults[k] for k in bound} == bound  # every documented argument reached it
    before = [p.detach().clone() for p in model.parameters()]
    _step(model, optimizer, seed=0)
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


@pytest.mark.parametrize("command", PARAMWISE_COMMANDS, ids=[c[15:85] for c in PARAMWISE_COMMANDS])
def test_paramwise_example_gives_the_documented_groups(project: Path, command: str) -> None:
    cfg = compose_command(command)
    model = TinyDetector()
    optimizer = _module(cfg, model).configure_optimizers()
    assert type(optimizer).__module__ == "my_project.optim"
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    actual = {
        name: (pytest.approx(group_of[id(p)]["lr"]), pytest.approx(group_of[id(p)]["weight_decay"]))
        for name, p in model.named_parameters()
    }
    assert actual == DOCUMENTED_GROUPS


def test_sgdw_follows_its_documented_update_and_resumes(project: Path) -> None:
    cfg = compose_command(PARAMWISE_COMMANDS[0])
    torch.manual_seed(0)
    model = TinyDetector()
    optimizer = _module(cfg, model).configure_optimizers()
    momentum = cfg.optimizer.momentum
    params = dict(model.named_parameters())
    expected, buffers = {n: p.detach().clone() for n, p in params.items()}, {}
    for seed in (0, 1):
        _step(model, optimizer, seed)
        for name, p in params.items():  # buf = momentum * buf + g;  p = p - lr * buf - lr * wd * p
            lr, decay = DOCUMENTED_GROUPS[name]
            buffers[name] = momentum * buffers[name] + p.grad if name in buffers else p.grad.clone()
            expected[name] = expected[name] - lr * buffers[name] - lr * decay * expected[name]
            torch.testing.assert_close(p.detach(), expected[name])
    # a resumed optimizer (state from a checkpoint) continues with the same momentum
    resumed_model = TinyDetector()
    resumed_model.load_state_dict(model.state_dict())
    resumed = _module(cfg, resumed_model).configure_optimizers()
    resumed.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # as saved and loaded
    _step(model, optimizer, seed=2)
    _step(resumed_model, resumed, seed=2)
    for a, b in zip(model.parameters(), resumed_model.parameters()):
        torch.testing.assert_close(a, b)


def test_auto_scale_lr_example(project: Path, tmp_path: Path) -> None:
    cfg = compose_command(next(c for c in COMMANDS if "auto_scale_lr=true dataset.batch_size=2" in c))
    module = _module(cfg, TinyDetector())
    module.trainer = instantiate(
        cfg.trainer, default_root_dir=str(tmp_path), accelerator="cpu", devices=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    optimizer = module.configure_optimizers()
    lrs = [g["lr"] for g in optimizer.param_groups]
    assert lrs == pytest.approx([0.005] * len(lrs))  # 0.02 x (2 images x 2 accumulated) / 16


def test_trainer_epochs_follow_the_schedule(project: Path) -> None:
    cfg = compose_command(next(c for c in COMMANDS if "schedule.max_epochs=6" in c))
    assert cfg.trainer.max_epochs == 6
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.02)
    factor = instantiate(cfg.schedule)(optimizer, iters_per_epoch=1000).lr_lambdas[0]
    assert [factor(i) for i in (3999, 4000, 4999, 5000)] == pytest.approx([1.0, 0.1, 0.1, 0.01])


def _schedule_table() -> dict[str, list[str]]:
    """The tutorial's schedule table: ``{option: [max_epochs, policy, milestones, warmup, min_lr_ratio]}``."""
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and cells[0].startswith("`") and cells[1].isdigit():
            rows[cells[0].split("`")[1]] = cells[1:]
    return rows


def test_schedule_table_matches_the_configs() -> None:
    conf = Path(__file__).resolve().parents[1] / "conf" / "schedule"
    table = _schedule_table()
    assert set(table) == {p.stem for p in conf.glob("*.yaml")}
    for name, (epochs, policy, milestones, warmup, min_lr) in table.items():
        cfg = OmegaConf.load(conf / f"{name}.yaml")
        documented_milestones = (
            None if milestones == "-" else [int(m) for m in milestones.strip("[]").split(",")]
        )
        configured_milestones = list(cfg.policy.milestones) if "milestones" in cfg.policy else None
        assert (int(epochs), f"lightdet.engine.{policy}", documented_milestones, float(min_lr)) == (
            cfg.max_epochs, cfg.policy._target_, configured_milestones, cfg.policy.min_lr_ratio
        ), name
        assert warmup == f"{cfg.warmup}, {cfg.warmup_iters} iters from {cfg.warmup_ratio:g}x", name


def _lr_curve(schedule: DictConfig, iters_per_epoch: int, steps: int) -> list[float]:
    """The lr of an SGD group at 0.02 at each of ``steps`` optimizer steps under ``schedule``."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.02)
    scheduler = instantiate(schedule)(optimizer, iters_per_epoch=iters_per_epoch)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_no_decay_line_replaces_the_policy(project: Path) -> None:
    cfg = compose_command(next(c for c in COMMANDS if "lightdet.engine.NoDecay" in c))
    assert cfg.schedule.warmup is None and set(cfg.schedule.policy) == {"_target_"}
    assert _lr_curve(cfg.schedule, iters_per_epoch=10, steps=60) == pytest.approx([0.02] * 60)


def test_your_own_policy_gives_the_documented_lr(project: Path) -> None:
    """my_project.schedules.PolyDecay: 0.02 x 0.5 ** 0.9 = 0.0107 halfway, after the warmup; 0 at the end."""
    cfg = compose_command(next(c for c in COMMANDS if c.endswith("schedule=poly --cfg job")))
    assert cfg.trainer.max_epochs == 12 and cfg.schedule.policy._target_ == "my_project.schedules.PolyDecay"
    lrs = _lr_curve(cfg.schedule, iters_per_epoch=100, steps=1205)
    warmup = [0.001 + 0.999 * it / 500 for it in range(500)] + [1.0] * 705
    assert lrs == pytest.approx([0.02 * w * (1 - min(it, 1200) / 1200) ** 0.9 for it, w in enumerate(warmup)])
    assert lrs[600] == pytest.approx(0.0107, abs=5e-5) and lrs[1200:] == [0.0] * 5
    squared = compose_command(next(c for c in COMMANDS if "schedule.policy.power=2.0" in c))
    assert _lr_curve(squared.schedule, iters_per_epoch=100, steps=601)[600] == pytest.approx(0.02 * 0.25)

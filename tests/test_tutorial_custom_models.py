"""docs/tutorials/4_custom_models.md does what it says, run from a directory outside lightdet.

The tutorial's own code blocks (``# my_project/...``, ``# my_configs/...``) are written, as
``tests/test_docs.py`` writes them, to a temp directory that becomes the working directory and joins
``sys.path``. Every ``lightdet-train`` line of the tutorial is composed with the user's config directory on
Hydra's search path; its model is instantiated, trained for one ``loss()``/``backward()`` and run through
``predict()`` on two random 64x64 images. None of the user's code is repeated here: the tests check the
tutorial's own text.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from lightdet.models import FPN
from lightdet.structures import DetBatch, Detections, DetSample, ImageMeta
from test_docs import _commands
from tutorial_helpers import compose_command, user_project

DOC = Path(__file__).resolve().parents[1] / "docs" / "tutorials" / "4_custom_models.md"
EXPERIMENT = "experiment=faster_rcnn_mobilenetv2_pafpn_diou_shapes"
COMMANDS = [c for c in _commands(DOC) if c.startswith("lightdet-train")]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The tutorial's ``my_project`` and ``my_configs`` in the working directory, importable."""
    yield from user_project(DOC, tmp_path, monkeypatch)


def _sample(seed: int, boxes: list[list[float]], labels: list[int]) -> DetSample:
    g = torch.Generator().manual_seed(seed)
    return DetSample(
        image=torch.randint(0, 256, (3, 64, 64), generator=g, dtype=torch.uint8),
        boxes=torch.tensor(boxes, dtype=torch.float32),
        labels=torch.tensor(labels, dtype=torch.int64),
        meta=ImageMeta(seed, f"img{seed}.jpg", (64, 64), (64, 64), (1.0, 1.0), False),
    )


def _batch() -> DetBatch:
    return DetBatch.collate([
        _sample(1, [[4, 6, 40, 50], [30, 20, 60, 58]], [0, 2]),
        _sample(2, [[10, 12, 34, 40]], [1]),
    ])


def _user_targets(node: Any) -> set[str]:
    """Every ``_target_`` under ``node`` that names a class of ``my_project``."""
    if isinstance(node, dict):
        own = {node["_target_"]} if str(node.get("_target_", "")).startswith("my_project.") else set()
        return own.union(*(_user_targets(v) for v in node.values()))
    if isinstance(node, list):
        return set().union(*(_user_targets(v) for v in node))
    return set()


def _class_path(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def test_tutorial_writes_the_files_it_uses(project: Path) -> None:
    files = {str(p.relative_to(project)) for p in project.rglob("*.*")}
    assert {"my_project/backbones.py", "my_project/necks.py", "my_project/heads.py", "my_project/losses.py",
            "my_configs/model/backbone/mobilenet_v2.yaml", "my_configs/model/neck/my_pafpn.yaml",
            "my_configs/model/neck/fpn_mobilenetv2.yaml",
            f"my_configs/{EXPERIMENT.replace('=', '/')}.yaml"} <= files  # fmt: skip
    assert any(EXPERIMENT in c for c in COMMANDS) and sum("--config-dir my_configs" in c for c in COMMANDS) >= 6


@pytest.mark.parametrize("command", COMMANDS, ids=[c.replace("lightdet-train ", "")[:70] for c in COMMANDS])
def test_documented_command_builds_a_working_detector(project: Path, command: str) -> None:
    cfg = compose_command(command)
    targets = _user_targets(OmegaConf.to_container(cfg.model, resolve=True))
    assert bool(targets) == ("--config-dir" in command), f"user parts {targets} for {command!r}"
    torch.manual_seed(0)
    model = instantiate(cfg.model, _convert_="all")
    built = {_class_path(m) for m in model.modules()}
    assert targets <= built, f"{command!r}: {targets - built} configured but not built"
    model.train()
    losses = model.loss(_batch())
    assert {"loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox", "acc"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values()), losses
    assert losses["loss_bbox"] > 0 and losses["loss_rpn_bbox"] > 0  # positives reached the box losses
    sum(v for k, v in losses.items() if k.startswith("loss")).backward()
    for name in ("backbone", "neck"):
        part = getattr(model, name)
        if _class_path(part) in targets:
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters()), name
    model.eval()
    detections = model.predict(_batch())
    assert len(detections) == 2 and all(isinstance(d, Detections) for d in detections)
    for det in detections:
        assert det.boxes.shape[0] <= int(cfg.model.roi_head.max_per_img)
        assert (det.boxes >= 0).all() and (det.boxes <= 64).all()
        assert (det.labels < int(cfg.dataset.num_classes)).all()


def test_experiment_uses_every_custom_part(project: Path) -> None:
    cfg = compose_command(next(c for c in COMMANDS if EXPERIMENT in c))
    assert cfg.name == EXPERIMENT.split("=")[1]
    model = instantiate(cfg.model, _convert_="all")
    head = model.roi_head.bbox_head
    assert [_class_path(p) for p in (model.backbone, model.neck, head, head.loss_bbox)] == [
        "my_project.backbones.MobileNetV2", "my_project.necks.PAFPN", "my_project.heads.ConvFCBBoxHead",
        "my_project.losses.DIoULoss",
    ]  # fmt: skip
    # the model file's (faster_rcnn_small's) backbone and neck keys reach the user's parts
    norm_type = {"BN": nn.BatchNorm2d, "GN": nn.GroupNorm, "FrozenBN": FrozenBatchNorm2d}[cfg.model.backbone.norm]
    assert any(isinstance(m, norm_type) for m in model.backbone.modules())
    assert model.backbone.norm_eval == cfg.model.backbone.norm_eval
    assert (model.neck.out_channels, model.neck.num_outs) == (cfg.model.neck.out_channels, cfg.model.neck.num_outs)
    assert len(model.neck.fpn.lateral_convs) == 4 - cfg.model.neck.start_level
    assert len(head.shared_convs) == cfg.model.roi_head.bbox_head.num_convs and len(head.shared_fcs) == 1


def test_backbone_gives_the_documented_channels_and_strides(project: Path) -> None:
    cfg = compose_command(next(c for c in COMMANDS if EXPERIMENT in c))
    backbone = instantiate(cfg.model.backbone)
    feats = backbone(torch.randn(1, 3, 64, 96))
    assert [f.shape[1] for f in feats] == list(cfg.model.neck.in_channels) == backbone.out_channels
    assert [tuple(f.shape[-2:]) for f in feats] == [(64 // s, 96 // s) for s in (4, 8, 16, 32)]


def test_backbone_frozen_stages_and_norm_eval(project: Path) -> None:
    from my_project.backbones import MobileNetV2

    backbone = MobileNetV2(frozen_stages=1, norm_eval=True).train()
    trainable = [any(p.requires_grad for p in stage.parameters()) for stage in backbone.stages]
    assert trainable == [False, False, True, True]
    norms = [m for m in backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and not any(m.training for m in norms)
    assert backbone.stages[3].training
    with pytest.raises(ValueError, match="frozen_stages"):
        MobileNetV2(frozen_stages=4)
    group_norms = [m for m in MobileNetV2(norm="GN").modules() if isinstance(m, nn.GroupNorm)]
    assert group_norms and all(m.num_groups == 8 for m in group_norms)


def test_pafpn_bottom_up_path_reaches_the_coarse_levels(project: Path) -> None:
    from my_project.necks import PAFPN

    torch.manual_seed(0)
    channels, sizes = [8, 16, 24, 32], [32, 16, 8, 4]
    neck, fpn = PAFPN(channels, 16, 5), FPN(channels, 16, 5)
    inputs = [torch.randn(1, c, s, s, requires_grad=True) for c, s in zip(channels, sizes)]
    outs = neck(inputs)
    assert [tuple(o.shape) for o in outs] == [(1, 16, s, s) for s in (32, 16, 8, 4, 2)]
    # In a plain FPN the stride-32 output ignores the finest input; PANet's bottom-up path feeds it.
    (grad_fpn,) = torch.autograd.grad(fpn(inputs)[3].sum(), inputs[0], allow_unused=True)
    (grad_pafpn,) = torch.autograd.grad(outs[3].sum(), inputs[0])
    assert grad_fpn is None and grad_pafpn.abs().sum() > 0
    assert torch.equal(outs[4], outs[3][..., ::2, ::2])  # the extra level max-pools the last one


def test_diou_loss_target_space_and_values(project: Path) -> None:
    from my_project.losses import DIoULoss

    loss = DIoULoss(loss_weight=2.0)
    assert loss.target_space == "boxes"
    target = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 40.0, 30.0]])
    assert float(loss(target.clone(), target)) == pytest.approx(0.0, abs=1e-6)
    # same size, shifted by 5 px: IoU 25/175, centre distance^2 50 over enclosing diagonal^2 450
    shifted = target[:1] + torch.tensor([5.0, 5.0, 5.0, 5.0])
    assert float(loss(shifted, target[:1])) == pytest.approx(2.0 * (1 - 1 / 7 + 50 / 450), rel=1e-5)
    assert float(loss(shifted, target[:1], avg_factor=4.0)) == pytest.approx(2.0 * (1 - 1 / 7 + 50 / 450) / 4)
    empty = torch.zeros(0, 4, requires_grad=True)
    zero = loss(empty, torch.zeros(0, 4), avg_factor=8.0)
    zero.backward()
    assert float(zero.detach()) == 0.0 and empty.grad is not None

"""BatchNorm folding: exact where it is folded, and only where every call site is conv -> norm."""

from __future__ import annotations

import copy

import pytest
import torch
from detr_builders import build_tiny_dfine, build_tiny_rtdetr
from mask_model_builders import build_tiny_cascade, build_tiny_mask_rcnn
from model_builders import build_tiny_detector, make_sample
from one_stage_builders import build_tiny_fcos, build_tiny_retinanet
from rtmdet.rtmdet_builders import build_tiny_rtmdet
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from lightdet.export.parity import assert_parity
from lightdet.models.detr.blocks import RepVggBlock
from lightdet.models.folding import find_foldable_pairs, fold_batchnorm, optimize_for_inference
from lightdet.models.layers import ConvModule
from lightdet.structures import DetBatch


def randomise_norms(model: nn.Module) -> None:
    """Non-trivial statistics and affine terms, so that a wrong fold shows."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)):
            c = m.running_mean.numel()
            m.running_mean.copy_(torch.rand(c, generator=g) * 2 - 1)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(c, generator=g) - 0.5)


@pytest.mark.parametrize("norm", [nn.BatchNorm2d, FrozenBatchNorm2d])
def test_folded_conv_equals_conv_then_norm(norm: type[nn.Module]) -> None:
    block = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), norm(8), nn.ReLU()).eval()
    randomise_norms(block)
    x = torch.randn(2, 3, 10, 12)
    expected = block(x)
    assert fold_batchnorm(block) == 1
    assert isinstance(block[1], nn.Identity) and block[0].bias is not None
    torch.testing.assert_close(block(x), expected, rtol=1e-5, atol=1e-5)


def test_backbone_norms_fold_and_detections_stay() -> None:
    """Every BatchNorm of the tiny ResNet-18 folds; the FCOS GroupNorm towers stay (not a per-channel map)."""
    torch.manual_seed(0)
    model = build_tiny_fcos().eval()
    randomise_norms(model)
    folded = copy.deepcopy(model)
    count = fold_batchnorm(folded)
    assert count == sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) > 0
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in folded.modules())
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for a, b in zip(model.extract_feat(x), folded.extract_feat(x)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_training_mode_norm_is_not_folded() -> None:
    block = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))  # train mode: batch statistics, not exact
    assert fold_batchnorm(block) == 0 and isinstance(block[1], nn.BatchNorm2d)


class TwoUsers(nn.Module):
    """The conv output feeds the norm and a skip connection: folding would change the skip."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 4, 1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + y


class SharedNorm(nn.Module):
    """One norm after two different convs: it cannot be folded into either."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.a(x)) + self.bn(self.b(x))


@pytest.mark.parametrize("module", [TwoUsers, SharedNorm])
def test_conv_with_other_users_is_not_folded(module: type[nn.Module]) -> None:
    model = module().eval()
    assert find_foldable_pairs(model) == []


class SharedConvPerLevelNorm(nn.Module):
    """RTMDet's head: one conv shared by the levels' towers, a norm per level; the towers have no common
    traceable parent (the list is looped over), so each is traced on its own."""

    def __init__(self) -> None:
        super().__init__()
        conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.towers = nn.ModuleList(nn.Sequential(conv, nn.BatchNorm2d(4)) for _ in range(2))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(feats) != len(self.towers):  # data-dependent: fx cannot trace this module as a whole
            raise ValueError("one map per tower")
        return [tower(x) for tower, x in zip(self.towers, feats)]


def test_a_conv_shared_by_several_norms_is_not_folded() -> None:
    model = SharedConvPerLevelNorm().eval()
    randomise_norms(model)
    feats = [torch.randn(1, 4, 6, 6), torch.randn(1, 4, 3, 3)]
    expected = model(feats)
    assert fold_batchnorm(model) == 0
    for a, b in zip(model(feats), expected):
        torch.testing.assert_close(a, b)


def test_repvgg_branches_merge_into_one_conv() -> None:
    """RepVGG's re-parameterisation: the 1x1 branch joins the 3x3 kernel's centre, both norms folded."""
    torch.manual_seed(0)
    block = RepVggBlock(6, 8, act="silu")
    randomise_norms(block)
    block.eval()
    x = torch.randn(2, 6, 9, 11)
    with torch.no_grad():
        expected = block(x)
        assert fold_batchnorm(block) == 2
        assert block.conv2 is None and isinstance(block.conv1.norm, nn.Identity)
        torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=1e-5)
    assert block.fold_branches() == 0  # already merged


def test_repvgg_block_in_training_mode_keeps_its_branches() -> None:
    block = RepVggBlock(4, 4).train()
    assert block.fold_branches() == 0 and block.conv2 is not None
    assert isinstance(block.conv1.norm, nn.BatchNorm2d)


def test_conv_module_pairs_are_found_by_name() -> None:
    model = nn.Sequential(ConvModule(3, 8, 3, padding=1, norm="BN", relu=True)).eval()
    assert find_foldable_pairs(model) == [("0.conv", "0.bn")]


BUILDERS = {
    "faster_rcnn": build_tiny_detector,
    "mask_rcnn": build_tiny_mask_rcnn,
    "cascade_mask_rcnn": build_tiny_cascade,
    "retinanet": build_tiny_retinanet,
    "fcos": build_tiny_fcos,
    "rtmdet": lambda: calibrated(build_tiny_rtmdet(exp_on_reg=True, max_per_img=100)),
    "rtdetr": build_tiny_rtdetr,
    "dfine": build_tiny_dfine,
}


def calibrated(model: nn.Module) -> nn.Module:
    """``model`` with BatchNorm statistics of one batch (the tiny RTMDet's features fade to ~0 at its
    initialisation: every score the prior, every box a point, nothing to compare)."""
    model.train()
    for norm in model.modules():
        if isinstance(norm, nn.BatchNorm2d):
            norm.momentum = 1.0
    with torch.no_grad():
        batch = DetBatch.collate([make_sample(96, 128, seed=5)])
        model.bbox_head(model.extract_feat(model.preprocess(batch)[0]))
    return model.eval()


@pytest.mark.parametrize("family", sorted(BUILDERS))
def test_optimized_model_gives_the_same_detections(family: str) -> None:
    """What Predictor and lightdet-test run (folded norms, channels-last weights) detects what the model as
    trained detects: the export parity criteria (boxes 1e-2 px, scores 1e-4, labels, masks IoU 0.99)."""
    torch.manual_seed(0)
    model = BUILDERS[family]().eval()
    if family != "rtmdet":
        randomise_norms(model)
    fast = optimize_for_inference(copy.deepcopy(model))
    left = [n for n, m in fast.named_modules() if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d))]
    # RTMDet's head shares its tower convs over the levels, each level with its own norm: those stay
    assert all(n.startswith("bbox_head.") for n in left) if family == "rtmdet" else not left
    assert not [m for m in fast.modules() if isinstance(m, RepVggBlock) and m.conv2 is not None]
    convs = [m for m in fast.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)
    batch = DetBatch.collate([make_sample(96, 128, seed=3), make_sample(80, 112, seed=4)])
    with torch.inference_mode():
        reference, candidate = model.predict(batch), fast.predict(batch)
    assert sum(len(d) for d in reference) > 0
    assert_parity(reference, candidate, what=f"optimized {family}")

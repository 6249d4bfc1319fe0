"""RetinaNet and FCOS: loss keys, pinned seeded losses, empty targets, gradients, prediction contract."""

import pytest
import torch
from model_builders import make_batch, make_sample
from one_stage_builders import build_tiny_fcos, build_tiny_retinanet

from lightdet.models import Detector, GHMCLoss, SingleStageDetector
from lightdet.models.dense_heads.dense_utils import flatten_level, topk_candidates
from lightdet.structures import DetBatch

BUILDERS = {"retinanet": build_tiny_retinanet, "fcos": build_tiny_fcos}
KEYS = {"retinanet": {"loss_cls", "loss_bbox"}, "fcos": {"loss_cls", "loss_bbox", "loss_centerness"}}


def total(losses: dict[str, torch.Tensor]) -> torch.Tensor:
    return sum(v for k, v in losses.items() if k.startswith("loss"))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("retinanet", {"loss_cls": 1.12852, "loss_bbox": 0.64633}),
        ("fcos", {"loss_cls": 1.12885, "loss_bbox": 0.99961, "loss_centerness": 0.69157}),
    ],
)
def test_seeded_loss_values_are_pinned(name, expected):
    torch.manual_seed(0)
    model = BUILDERS[name]().train()
    losses = {k: v.item() for k, v in model.loss(make_batch()).items()}
    # Computed once with this code; a change means the maths changed.
    assert set(losses) == KEYS[name]
    assert losses == pytest.approx(expected, rel=2e-3, abs=1e-5)


@pytest.mark.parametrize("name", ["retinanet", "fcos"])
def test_gradients_reach_trainable_and_skip_frozen(name):
    torch.manual_seed(0)
    model = BUILDERS[name]().train()
    # a box large enough for FCOS's coarsest range (max distance >= 64), so its scale is trained too
    batch = DetBatch.collate([
        make_sample(64, 80, [[4, 6, 40, 50], [30, 20, 76, 60]], [0, 2], seed=1),
        make_sample(160, 160, [[2, 2, 150, 156]], [1], seed=6),
    ])
    total(model.loss(batch)).backward()
    params = dict(model.named_parameters())
    frozen = [n for n, p in params.items() if not p.requires_grad]
    stem_and_layer1 = ("backbone.conv1", "backbone.bn1", "backbone.layer1.")
    assert frozen and all(n.startswith(stem_and_layer1) for n in frozen)
    missing = [
        n for n, p in params.items() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)
    ]
    assert missing == []


@pytest.mark.parametrize("name", ["retinanet", "fcos"])
def test_batch_without_any_targets(name):
    torch.manual_seed(0)
    model = BUILDERS[name]().train()
    losses = model.loss(DetBatch.collate([make_sample(48, 64, seed=4), make_sample(64, 48, seed=5)]))
    assert losses["loss_cls"] > 0 and losses["loss_bbox"] == 0
    assert all(torch.isfinite(v) for v in losses.values())
    total(losses).backward()


def test_plain_fcos_and_ghm_retinanet_train():
    torch.manual_seed(0)
    for model in (build_tiny_fcos(tricks=False), build_tiny_retinanet(loss_cls=GHMCLoss())):
        losses = model.train().loss(make_batch())
        assert all(torch.isfinite(v) and v > 0 for v in losses.values())
        total(losses).backward()


@pytest.mark.parametrize("name", ["retinanet", "fcos"])
def test_predict_returns_original_coordinates(name):
    torch.manual_seed(0)
    model = BUILDERS[name]().eval()
    assert isinstance(model, SingleStageDetector) and isinstance(model, Detector)
    plain = model.predict(DetBatch.collate([make_sample(64, 80, seed=1)]))[0]
    doubled = make_sample(64, 80, seed=1, ori_size=(32, 40), scale_factor=(2.0, 2.0))
    scaled = model.predict(DetBatch.collate([doubled]))[0]
    assert len(plain) == len(scaled) == model.bbox_head.max_per_img
    torch.testing.assert_close(scaled.boxes, plain.boxes / 2)
    torch.testing.assert_close(scaled.scores, plain.scores)
    assert (scaled.boxes[:, 0::2] <= 40).all() and (scaled.boxes[:, 1::2] <= 32).all()
    assert ((plain.labels >= 0) & (plain.labels < 3)).all() and (plain.scores[:-1] >= plain.scores[1:]).all()


def test_test_time_limits():
    torch.manual_seed(0)
    model = build_tiny_retinanet().eval()
    head = model.bbox_head
    head.nms_pre, head.max_per_img, head.score_thr = 5, 1000, 0.0
    dets = model.predict(DetBatch.collate([make_sample(64, 80, seed=1)]))[0]
    assert 0 < len(dets) <= 5 * 3  # at most nms_pre per level, 3 levels
    head.score_thr = 1.0
    assert len(model.predict(DetBatch.collate([make_sample(64, 80, seed=1)]))[0]) == 0


def test_fcos_score_modes():
    torch.manual_seed(0)
    head = build_tiny_fcos().bbox_head
    head.score_thr = 0.05
    cls, ctr = torch.tensor([[0.5, 0.1], [0.04, 0.9]]), torch.tensor([0.5, 0.25])
    s, idx, lab = head._candidates(cls, ctr)  # multiply: candidates by class score
    assert s.tolist() == pytest.approx([0.225, 0.25, 0.05]) and idx.tolist() == [1, 0, 0]
    head.score_mode, head.score_thr = "sqrt", 0.2
    s, idx, lab = head._candidates(cls, ctr)
    assert s.tolist() == pytest.approx([0.5, 0.474342, 0.223607], rel=1e-5) and lab.tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match="score_mode"):
        type(head)(3, 32, 32, point_generator=head.point_generator, assigner=head.assigner,
                   loss_cls=head.loss_cls, loss_bbox=head.loss_bbox, loss_centerness=head.loss_centerness,
                   score_mode="mean")


def test_helpers_flatten_order_and_topk():
    x = torch.arange(2 * 3 * 2 * 1 * 2).float().view(1, 2 * 3, 2, 2)  # A=2 anchors, K=3 classes, H=W=2
    flat = flatten_level(x, 3)
    assert flat.shape == (1, 8, 3)
    assert flat[0, 1].tolist() == [12.0, 16.0, 20.0]  # position (0, 0), anchor 1: channels 3..5
    scores, index, labels = topk_candidates(torch.tensor([[0.1, 0.9], [0.6, 0.3]]), 0.2, 2)
    assert scores.tolist() == pytest.approx([0.9, 0.6])
    assert index.tolist() == [0, 1] and labels.tolist() == [1, 0]
    empty = topk_candidates(torch.zeros(0, 2), 0.2, 2)
    assert all(t.numel() == 0 for t in empty)

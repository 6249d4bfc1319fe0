import pytest
import torch
from model_builders import make_sample

from lightdet.models import (
    NMS,
    BBoxHead,
    CrossEntropyLoss,
    DeltaXYWHCoder,
    GIoULoss,
    L1Loss,
    MaxIoUAssigner,
    MultiLevelRoIAlign,
    RandomSampler,
    SoftNMS,
    StandardRoIHead,
)
from lightdet.structures import DetBatch, Detections

K = 3


def build_head(*, agnostic: bool = False, loss_bbox=None, **kwargs) -> StandardRoIHead:
    torch.manual_seed(0)
    bbox_head = BBoxHead(
        K, 8, 7, num_shared_fcs=2, fc_out_channels=16, reg_class_agnostic=agnostic,
        box_coder=DeltaXYWHCoder(stds=(0.1, 0.1, 0.2, 0.2)), loss_cls=CrossEntropyLoss(),
        loss_bbox=loss_bbox or L1Loss(),
    )
    return StandardRoIHead(
        MultiLevelRoIAlign(7, [4, 8]), bbox_head, assigner=MaxIoUAssigner(0.5, 0.5, match_low_quality=False),
        sampler=RandomSampler(16, 0.25), **kwargs,
    )


def feats() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    return [torch.randn(2, 8, 16, 16, generator=g), torch.randn(2, 8, 8, 8, generator=g)]


def batch_with(ignore: list[bool] | None = None) -> DetBatch:
    return DetBatch.collate([
        make_sample(64, 64, [[4, 4, 30, 30], [20, 30, 60, 62], [40, 0, 60, 20]], [2, 0, 1], ignore=ignore),
        make_sample(64, 64, seed=1),
    ])


def proposals() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    xy = torch.rand(2, 40, 2, generator=g) * 40
    boxes = torch.cat([xy, xy + 4 + torch.rand(2, 40, 2, generator=g) * 20], -1)
    return [boxes[0], boxes[1]]


def test_bbox_head_layout_background_last():
    head = build_head().bbox_head
    shapes = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    assert shapes["shared_fcs.0.weight"] == (16, 8 * 49) and shapes["shared_fcs.1.weight"] == (16, 16)
    assert shapes["fc_cls.weight"] == (K + 1, 16) and shapes["fc_reg.weight"] == (4 * K, 16)
    assert build_head(agnostic=True).bbox_head.fc_reg.weight.shape == (4, 16)
    # a RoI labelled K is background: it is classified but never regressed
    cls, deltas = torch.zeros(2, K + 1), torch.randn(2, 4 * K)
    rois = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 2)
    losses = head.loss(cls, deltas, rois, torch.tensor([K, K]), torch.zeros(2, 4))
    assert losses["loss_bbox"] == 0
    assert losses["loss_cls"].item() == pytest.approx(torch.log(torch.tensor(K + 1.0)).item())
    # a positive of class 1 is regressed with the deltas in columns 4..7; the L1 sum is divided by the
    # number of RoIs
    deltas = torch.zeros(2, 4 * K)
    deltas[0, 4:8] = torch.tensor([1.0, 0.0, -0.5, 0.0])
    deltas[0, 0:4] = 7.0
    pos = head.loss(torch.zeros(2, K + 1), deltas, rois, torch.tensor([1, K]), rois)
    assert pos["loss_bbox"].item() == pytest.approx(1.5 / 2)


def test_sampling_adds_ground_truth_and_skips_ignored():
    head = build_head()
    b = batch_with(ignore=[False, True, False])
    s = head.sample(proposals()[0], b.boxes[0], b.labels[0], b.ignore[0])
    assert s.num_pos >= 2 and len(s.boxes) <= 16
    assert set(s.gt_index[: s.num_pos].tolist()) <= {0, 2} and (s.gt_index[s.num_pos :] == -1).all()
    assert (s.labels[: s.num_pos] == b.labels[0][s.gt_index[: s.num_pos]]).all()
    assert (s.labels[s.num_pos :] == K).all()
    torch.testing.assert_close(s.gt_boxes[: s.num_pos], b.boxes[0][s.gt_index[: s.num_pos]])
    head = build_head(add_gt_as_proposals=False)
    no_gt = head.sample(torch.zeros(0, 4), b.boxes[0], b.labels[0], b.ignore[0])
    assert len(no_gt.boxes) == 0


def test_loss_with_and_without_targets():
    head = build_head()
    losses = head.loss(feats(), proposals(), batch_with())
    assert set(losses) == {"loss_cls", "loss_bbox", "acc"} and losses["loss_bbox"] > 0
    empty = DetBatch.collate([make_sample(64, 64), make_sample(64, 64, seed=1)])
    losses = head.loss(feats(), proposals(), empty)
    assert losses["loss_bbox"] == 0 and torch.isfinite(losses["loss_cls"])
    (losses["loss_cls"] + losses["loss_bbox"]).backward()
    assert head.bbox_head.fc_reg.weight.grad is not None


def test_decoded_box_loss_in_bbox_head():
    losses = build_head(loss_bbox=GIoULoss(), agnostic=True).loss(feats(), proposals(), batch_with())
    assert 0 < losses["loss_bbox"] < 2


def test_predict_thresholds_suppresses_and_caps():
    dets = build_head(score_thr=0.0, max_per_img=7).predict(feats(), proposals(), batch_with())
    assert [len(d) for d in dets] == [7, 7]
    assert all(((d.labels >= 0) & (d.labels < K)).all() for d in dets)
    assert all((d.scores[:-1] >= d.scores[1:]).all() for d in dets)
    assert [len(d) for d in build_head(score_thr=0.9).predict(feats(), proposals(), batch_with())] == [0, 0]
    soft_head = build_head(score_thr=0.0, nms=SoftNMS(0.3), max_per_img=5)
    soft = soft_head.predict(feats(), proposals(), batch_with())
    assert [len(d) for d in soft] == [5, 5]


def test_postprocess_rules():
    head = build_head(score_thr=0.2, nms=NMS(0.5), min_box_size=1.0)
    boxes = torch.tensor(
        [[[0.0, 0.0, 10.0, 10.0]] * K, [[1.0, 0.0, 11.0, 10.0]] * K, [[0.0, 0.0, 0.5, 9.0]] * K]
    )
    scores = torch.tensor([[0.9, 0.1, 0.3], [0.8, 0.05, 0.6], [0.95, 0.0, 0.0]])
    dets = head.postprocess(boxes, scores)
    # row 2 is too thin; row 1 class 0 overlaps row 0 class 0; classes 2 of rows 0 and 1 also overlap
    assert dets.labels.tolist() == [0, 2] and dets.scores.tolist() == pytest.approx([0.9, 0.6])


def test_empty_proposals_predict():
    dets = build_head().predict(feats(), [torch.zeros(0, 4), torch.zeros(0, 4)], batch_with())
    assert [len(d) for d in dets] == [0, 0]


class CountingBranch(torch.nn.Module):
    """A minimal extra branch: a loss on the positives' pooled features, masks of ones at test time."""

    def __init__(self) -> None:
        super().__init__()
        self.extractor = MultiLevelRoIAlign(7, [4, 8])
        self.scale = torch.nn.Parameter(torch.ones(()))

    def loss(self, feats, samples, batch):
        pos = [s.boxes[: s.num_pos] for s in samples]
        rois = torch.cat([torch.cat([torch.full((len(p), 1), float(i)), p], 1) for i, p in enumerate(pos)])
        return {"loss_toy": self.scale * self.extractor(feats, rois).abs().mean()}

    def predict(self, feats, detections, batch):
        return [
            Detections(d.boxes, d.scores, d.labels, masks=torch.ones(len(d), *m.ori_size, dtype=torch.bool))
            for d, m in zip(detections, batch.metas)
        ]


def test_optional_branch_is_composed_in():
    head = build_head(mask_head=CountingBranch(), score_thr=0.0)
    losses = head.loss(feats(), proposals(), batch_with())
    assert set(losses) == {"loss_cls", "loss_bbox", "acc", "loss_toy"}
    losses["loss_toy"].backward()
    assert head.mask_head.scale.grad is not None
    dets = head.predict(feats(), proposals(), batch_with())
    assert dets[0].masks is not None and dets[0].masks.shape[1:] == (64, 64)
    assert "mask_head.scale" in head.state_dict()
    with pytest.raises(TypeError, match="lacks loss"):
        build_head(mask_head=torch.nn.Identity())

import torch
from model_builders import make_sample

from lightdet.models import (
    AnchorGenerator,
    CrossEntropyLoss,
    DeltaXYWHCoder,
    GIoULoss,
    L1Loss,
    MaxIoUAssigner,
    RandomSampler,
    RPNHead,
)
from lightdet.structures import DetBatch


def build_rpn(loss_bbox=None, min_box_size: float = 0.0) -> RPNHead:
    torch.manual_seed(0)
    return RPNHead(
        8, 8, anchor_generator=AnchorGenerator([4, 8], scales=[4]), box_coder=DeltaXYWHCoder(),
        assigner=MaxIoUAssigner(0.7, 0.3, min_pos_iou=0.3), sampler=RandomSampler(32, 0.5),
        loss_cls=CrossEntropyLoss(use_sigmoid=True), loss_bbox=loss_bbox or L1Loss(),
        train_pre_nms_top_n=60, train_post_nms_top_n=40, test_pre_nms_top_n=30, test_post_nms_top_n=20,
        min_box_size=min_box_size,
    )


def feats(batch_size: int = 2) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(batch_size, 8, 8, 12, generator=g), torch.randn(batch_size, 8, 4, 6, generator=g)]


def two_images(with_boxes: bool = True) -> DetBatch:
    boxes = [[2, 2, 20, 18], [10, 4, 40, 30]] if with_boxes else None
    first = make_sample(32, 48, boxes, [0, 1] if with_boxes else None)
    return DetBatch.collate([first, make_sample(28, 40, seed=1)])


def test_forward_layout_and_names():
    head = build_rpn()
    logits, deltas = head(feats())
    assert [tuple(x.shape) for x in logits] == [(2, 8 * 12 * 3), (2, 4 * 6 * 3)]
    assert [tuple(x.shape) for x in deltas] == [(2, 8 * 12 * 3, 4), (2, 4 * 6 * 3, 4)]
    shapes = {k: tuple(v.shape) for k, v in head.state_dict().items()}
    assert shapes["rpn_cls.weight"] == (3, 8, 1, 1) and shapes["rpn_reg.weight"] == (12, 8, 1, 1)
    # anchor a at (y, x) reads channel a of rpn_cls and channels 4a..4a+3 of rpn_reg
    raw_cls = head.rpn_cls(torch.relu(head.rpn_conv(feats()[0])))
    raw_reg = head.rpn_reg(torch.relu(head.rpn_conv(feats()[0])))
    y, x, a = 3, 5, 2
    assert torch.equal(logits[0][1, (y * 12 + x) * 3 + a], raw_cls[1, a, y, x])
    assert torch.equal(deltas[0][1, (y * 12 + x) * 3 + a], raw_reg[1, 4 * a : 4 * a + 4, y, x])


def test_loss_with_and_without_targets():
    head = build_rpn()
    losses, proposals = head.loss(feats(), two_images(), (32, 48))
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_bbox"}
    assert losses["loss_rpn_bbox"] > 0 and losses["loss_rpn_cls"] > 0
    assert [len(p.boxes) <= 40 for p in proposals] == [True, True]
    empty, _ = head.loss(feats(), two_images(with_boxes=False), (32, 48))
    assert empty["loss_rpn_bbox"] == 0 and torch.isfinite(empty["loss_rpn_cls"])
    sum(empty.values()).backward()
    assert head.rpn_cls.weight.grad is not None and head.rpn_reg.weight.grad is not None


def test_decoded_box_loss_is_supported():
    losses, _ = build_rpn(loss_bbox=GIoULoss()).loss(feats(), two_images(), (32, 48))
    assert 0 < losses["loss_rpn_bbox"] < 2


def test_predict_proposals_are_clipped_sorted_and_capped():
    head = build_rpn()
    proposals = head.predict(feats(), two_images(), (32, 48))
    for p, (h, w) in zip(proposals, [(32, 48), (28, 40)]):
        assert 0 < len(p.boxes) <= 20
        assert (p.boxes[:, 0::2] <= w).all() and (p.boxes[:, 1::2] <= h).all() and (p.boxes >= 0).all()
        assert (p.scores[:-1] >= p.scores[1:]).all() and ((p.scores > 0) & (p.scores < 1)).all()


def test_levels_do_not_suppress_each_other_and_small_boxes_drop():
    head = build_rpn(min_box_size=1.0)
    anchors = [
        torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.5, 10.5]]),
        torch.tensor([[0.0, 0.0, 10.0, 10.0]]),
    ]
    logits = [torch.tensor([[2.0, 1.0]]), torch.tensor([[0.5]])]
    deltas = [torch.zeros(1, 2, 4), torch.zeros(1, 1, 4)]
    out = head.proposals(logits, deltas, anchors, [(20, 20)], 10, 10)[0]
    assert len(out.boxes) == 2  # the level-0 near-duplicate is suppressed, the level-1 duplicate is not
    torch.testing.assert_close(out.scores, torch.tensor([2.0, 0.5]).sigmoid())
    tiny = [torch.tensor([[0.0, 0.0, 10.0, 0.5], [0.0, 0.0, 5.0, 5.0]]), torch.zeros(0, 4)]
    logits = [torch.tensor([[3.0, 1.0]]), torch.zeros(1, 0)]
    out = head.proposals(logits, [torch.zeros(1, 2, 4), torch.zeros(1, 0, 4)], tiny, [(20, 20)], 10, 10)[0]
    torch.testing.assert_close(out.boxes, torch.tensor([[0.0, 0.0, 5.0, 5.0]]))


def test_per_level_top_k():
    head = build_rpn()
    anchors = [torch.tensor([[0.0, 0.0, 4.0, 4.0], [10.0, 0.0, 14.0, 4.0], [20.0, 0.0, 24.0, 4.0]])]
    logits = [torch.tensor([[0.1, 0.9, 0.5]])]
    out = head.proposals(logits, [torch.zeros(1, 3, 4)], anchors, [(30, 30)], 2, 10)[0]
    torch.testing.assert_close(out.boxes, anchors[0][[1, 2]])


def test_half_precision_outputs_are_decoded_in_float32():
    head = build_rpn()
    logits, deltas = head(feats())
    anchors = head.anchors(feats(), (32, 48))
    full = head.proposals(logits, deltas, anchors, [(32, 48), (28, 40)], 30, 20)
    halves = [x.half() for x in logits], [x.half() for x in deltas]
    half = head.proposals(*halves, anchors, [(32, 48), (28, 40)], 30, 20)
    assert all(h.boxes.dtype == torch.float32 and h.scores.dtype == torch.float32 for h in half)
    torch.testing.assert_close(half[0].boxes[:5], full[0].boxes[:5], atol=0.1, rtol=0)


def test_anchors_in_batch_padding_are_not_sampled():
    head = build_rpn()
    head.sampler = RandomSampler(10_000, 0.5)  # sample every negative
    head.loss_cls = CrossEntropyLoss(use_sigmoid=True, reduction="sum")
    batch = DetBatch.collate([make_sample(32, 48, seed=0), make_sample(16, 16, seed=1)])
    anchors = torch.tensor([[0.0, 0.0, 8.0, 8.0], [20.0, 0.0, 28.0, 8.0], [40.0, 20.0, 48.0, 28.0]] * 2)
    losses = head._losses(torch.zeros(2, 6), torch.zeros(2, 6, 4), anchors, batch)
    # All 6 anchors are negatives of the 32x48 image; only 2 of the 16x16 one (the centres (24, 4) and
    # (44, 24) lie in its padding). Every logit is 0, so each sampled negative costs log 2.
    torch.testing.assert_close(losses["loss_rpn_cls"], torch.tensor(8 * 0.693147), atol=1e-4, rtol=0)

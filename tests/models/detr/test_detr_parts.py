"""Unit tests of the DETR parts: denoising queries, deformable sampling, GO-LSD union matching, FDR bins,
config composition and a training step with denoising."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from lightdet.composition import compose_config
from lightdet.models.detr.criterion import union_matches
from lightdet.models.detr.deformable_attention import deformable_attention_core, sample_discrete
from lightdet.models.detr.denoising import contrastive_denoising
from lightdet.models.detr.fdr import bin_interpolation, weighting_function
from lightdet.structures import DetBatch, DetSample, ImageMeta

MODELS = ["rtdetr_r18vd", "rtdetr_r34vd", "rtdetr_r50vd", "rtdetr_r50vd_m", "rtdetr_r101vd", "rtdetrv2_r18vd",
          "rtdetrv2_r34vd", "rtdetrv2_r50vd", "rtdetrv2_r50vd_m", "rtdetrv2_r101vd", "dfine_n", "dfine_s", "dfine_m",
          "dfine_l", "dfine_x"]
# published parameter counts (millions, 80 classes)
PARAMS = {"rtdetr_r18vd": 20, "rtdetr_r34vd": 31, "rtdetr_r50vd": 42, "rtdetr_r101vd": 76, "dfine_n": 4,
          "dfine_s": 10, "dfine_m": 19, "dfine_l": 31, "dfine_x": 62}


def gt() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    labels = [torch.tensor([1, 3]), torch.tensor([2]), torch.zeros(0, dtype=torch.int64)]
    boxes = [torch.tensor([[0.5, 0.5, 0.2, 0.3], [0.3, 0.6, 0.1, 0.1]]), torch.tensor([[0.4, 0.4, 0.5, 0.5]]),
             torch.zeros(0, 4)]
    return labels, boxes


def test_denoising_shapes_and_mask() -> None:
    labels, boxes = gt()
    torch.manual_seed(0)
    dn = contrastive_denoising(labels, boxes, num_classes=5, num_queries=7, num_denoising=10)
    assert dn is not None and dn.num_groups == 5 and dn.num_queries == 20  # 2 boxes max: 5 groups of 2 x 2
    assert dn.labels.shape == (3, 20) and dn.boxes_unact.shape == (3, 20, 4) and dn.attn_mask.shape == (27, 27)
    assert (dn.labels[2] == 5).all()  # the image without boxes is all padding
    mask = dn.attn_mask
    assert mask[20:, :20].all() and not mask[20:, 20:].any()  # matching queries never see denoising ones
    assert not mask[:20, 20:].any()  # denoising queries see the matching ones
    assert not mask[:4, :4].any() and mask[:4, 4:20].all()  # group 0 sees only itself
    assert [p.tolist() for p in dn.positive_idx] == [[0, 1, 4, 5, 8, 9, 12, 13, 16, 17], [0, 4, 8, 12, 16], []]
    assert contrastive_denoising([torch.zeros(0, dtype=torch.int64)], [torch.zeros(0, 4)], num_classes=5,
                                 num_queries=7) is None


def test_denoising_matches_transformers_seeded() -> None:
    hf = pytest.importorskip("transformers.models.rt_detr.modeling_rt_detr")
    labels, boxes = gt()
    torch.manual_seed(3)
    ours = contrastive_denoising(labels, boxes, num_classes=5, num_queries=7, num_denoising=10)
    torch.manual_seed(3)
    targets = [{"class_labels": c, "boxes": b} for c, b in zip(labels, boxes)]
    cls, box, mask, meta = hf.get_contrastive_denoising_training_group(targets, 5, 7, lambda x: x, 10, 0.5, 1.0)
    assert ours is not None
    assert torch.equal(ours.labels, cls.long())
    torch.testing.assert_close(ours.boxes_unact, box)
    assert torch.equal(ours.attn_mask, torch.isinf(mask))
    assert all(torch.equal(a, b) for a, b in zip(ours.positive_idx, meta["dn_positive_idx"]))


def test_discrete_sampling_picks_nearest_pixels() -> None:
    value = torch.arange(12.0).view(1, 1, 3, 4)  # [B*h, hd, H, W]
    loc = torch.tensor([[[[0.1, 0.1], [0.9, 0.9], [-0.2, 0.5]]]])  # (x, y) in [0, 1]
    out = sample_discrete(value, loc)
    assert out.flatten().tolist() == [0.0, 11.0, 8.0]  # (0, 0), (3, 2) and x clamped to 0 in row 2


def test_per_level_point_counts() -> None:
    values = [torch.ones(2 * 2, 4, 8, 8), 2 * torch.ones(2 * 2, 4, 4, 4)]  # B=2, heads=2, hd=4
    loc = torch.full((2, 5, 2, 3 + 1, 2), 0.5)  # 3 points on level 0, 1 on level 1
    weights = torch.full((2, 5, 2, 4), 0.25)
    out = deformable_attention_core(values, loc, weights, [3, 1])
    torch.testing.assert_close(out, torch.full((2, 5, 8), 0.75 + 0.5))


def test_union_matches_prefers_the_most_frequent_pair() -> None:
    t = torch.tensor
    heads = [[(t([0, 1]), t([0, 1]))], [(t([0, 2]), t([0, 1]))], [(t([0, 1]), t([1, 1]))]]
    (rows, cols), = union_matches(heads)
    assert dict(zip(rows.tolist(), cols.tolist())) == {0: 0, 1: 1, 2: 1}


def test_fdr_bins_interpolate() -> None:
    bins = weighting_function(32, 0.5, 4.0)
    assert bins.shape == (33,) and bins[16] == 0 and bins[0] == -4 and bins[-1] == 4
    index, right, left = bin_interpolation(torch.tensor([bins[10].item(), -9.0, 9.0]), bins)
    assert index.tolist()[:2] == [10.0, 0.0] and abs(index[2].item() - 31.9) < 1e-5
    assert right.tolist() == [0.0, 0.0, 1.0] and left.tolist() == [1.0, 1.0, 0.0]


@pytest.mark.parametrize("name", MODELS)
def test_model_configs_instantiate(name: str) -> None:
    cfg = compose_config(None, [f"+model={name}", "+dataset.num_classes=80"])
    with torch.device("meta"):
        model = instantiate(cfg.model)
    assert model.backbone.out_channels == list(cfg.model.encoder.in_channels)
    if name in PARAMS:
        assert round(sum(p.numel() for p in model.parameters()) / 1e6) == pytest.approx(PARAMS[name], abs=1)


@pytest.mark.parametrize("name", ["rtdetr_r18vd", "dfine_n"])
def test_training_step_with_denoising(name: str) -> None:
    overrides = ["model.decoder.num_queries=20", "model.decoder.num_layers=2", "model.num_top_queries=10"]
    cfg = compose_config(None, [f"+model={name}", "+dataset.num_classes=3", *overrides])
    torch.manual_seed(0)
    model = instantiate(cfg.model).train()
    g = torch.Generator().manual_seed(0)
    samples = [
        DetSample(torch.randint(0, 255, (3, 128, 160), generator=g, dtype=torch.uint8),
                  torch.tensor([[10.0, 20.0, 60.0, 90.0], [70.0, 30.0, 150.0, 120.0]]), torch.tensor([0, 2]),
                  ImageMeta(0, "a.jpg", (128, 160), (128, 160))),
        DetSample(torch.randint(0, 255, (3, 96, 128), generator=g, dtype=torch.uint8), torch.zeros(0, 4),
                  torch.zeros(0, dtype=torch.int64), ImageMeta(1, "b.jpg", (96, 128), (96, 128))),
    ]
    batch = DetBatch.collate(samples)
    losses = model.loss(batch)
    assert any("_dn_" in k for k in losses) and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.decoder.denoising_class_embed.weight.grad is not None
    detections = model.eval().predict(batch)
    assert [len(d) for d in detections] == [10, 10]
    assert (detections[1].boxes[:, 2:] <= torch.tensor([128.0, 96.0])).all()

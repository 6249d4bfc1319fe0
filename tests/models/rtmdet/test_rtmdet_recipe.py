"""The RTMDet experiments carry MMDetection's published recipe; shapes_rtmdet trains on a CPU."""

from __future__ import annotations

import pytest

SIZES = {"tiny": (0.375, False), "s": (0.5, False), "m": (0.75, False), "l": (1.0, True), "x": (1.25, True)}


@pytest.mark.parametrize("size", list(SIZES))
def test_coco_experiment_is_the_published_recipe(compose_cfg, size):
    cfg = compose_cfg([f"experiment=rtmdet_{size}_8xb32-300e_coco"])
    widen, exp_on_reg = SIZES[size]
    assert cfg.name == f"rtmdet_{size}_8xb32-300e_coco" and cfg.dataset.name == "coco"
    assert cfg.model.backbone.widen_factor == widen and cfg.model.bbox_head.exp_on_reg is exp_on_reg
    assert cfg.optimizer._target_ == "torch.optim.AdamW" and cfg.optimizer.lr == 0.004
    assert cfg.optimizer.weight_decay == 0.05 and cfg.module.base_batch_size == 256
    assert cfg.module.paramwise.norm_decay_mult == 0.0 and cfg.module.paramwise.bias_decay_mult == 0.0
    assert cfg.schedule.max_epochs == 300 and cfg.schedule.warmup_iters == 1000
    assert cfg.schedule.policy.flat_epochs == 150 and cfg.schedule.policy.min_lr_ratio == 0.05
    assert cfg.callbacks.ema.momentum == 0.0002 and cfg.dataset.batch_size == 32
    head = cfg.model.bbox_head
    assert head.assigner.topk == 13 and head.loss_cls.beta == 2.0 and head.loss_bbox.loss_weight == 2.0
    assert head.nms.iou_threshold == 0.65 and head.max_per_img == 300 and head.score_thr == 0.001
    pipeline = cfg.dataset.pipeline
    steps = [step._target_.rsplit(".", 1)[1] for step in pipeline.train]
    assert steps == [
        "LoadImage",
        "Mosaic",
        "RandomResize",
        "RandomCrop",
        "RandomHSV",
        "RandomFlip",
        "Pad",
        "MixUp",
    ]
    assert "Mosaic" not in str(pipeline.train_late) and cfg.callbacks.pipeline_switch.epoch == 280
    assert pipeline.resize_ratio_range == ([0.5, 2.0] if size in ("tiny", "s") else [0.1, 2.0])
    tiny = size == "tiny"  # smaller caches, no random pops, MixUp on half the images
    assert (pipeline.mosaic_cache, pipeline.mixup_cache) == ((20, 10) if tiny else (40, 20))
    assert pipeline.random_pop is not tiny and pipeline.mixup_prob == (0.5 if tiny else 1.0)
    assert pipeline.test[1].scale == [640, 640]


def test_shapes_rtmdet_composes_for_the_cpu(compose_cfg):
    cfg = compose_cfg(["experiment=shapes_rtmdet"])
    assert cfg.dataset.name == "shapes" and cfg.model.backbone.widen_factor == 0.375
    assert cfg.model.preprocessor.to_bgr and cfg.optimizer.lr == 0.004

"""FlatCosineDecay: RTMDet's flat-then-cosine lr, with the warmup of build_warmup_scheduler."""

from __future__ import annotations

import pytest
import torch

from lightdet.engine import build_warmup_scheduler, lr_factor
from lightdet.engine.flat_cosine import FlatCosineDecay


def test_flat_then_half_a_cosine_per_iteration():
    policy = FlatCosineDecay(150, 0.05)
    at = [policy(e * 10, iters_per_epoch=10, max_epochs=300) for e in (0, 149, 150, 225, 300, 310)]
    # flat to epoch 150, cosine midpoint 0.05 + 0.95 / 2 at epoch 225, 0.05 at the end and after
    assert at == pytest.approx([1.0, 1.0, 1.0, 0.525, 0.05, 0.05])
    assert policy(1505, iters_per_epoch=10, max_epochs=300) < 1.0  # per iteration, not per epoch
    with pytest.raises(ValueError, match="min_lr_ratio"):
        FlatCosineDecay(10, 1.5)


def test_rtmdet_warmup_then_flat():
    policy = FlatCosineDecay(150, 0.05)
    kwargs = dict(policy=policy, iters_per_epoch=100, max_epochs=300, warmup_iters=1000, warmup_ratio=1e-5)
    assert lr_factor(0, **kwargs) == pytest.approx(1e-5)
    assert lr_factor(500, **kwargs) == pytest.approx(1e-5 + (1 - 1e-5) * 0.5)
    assert lr_factor(1000, **kwargs) == 1.0
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=0.004)
    scheduler = build_warmup_scheduler(optimizer, **kwargs)
    for _ in range(1000):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.004)

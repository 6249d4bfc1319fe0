"""Gradient-harmonized classification loss, GHM-C (Li, Liu & Wang, AAAI 2019), as MMDetection's ``GHMC``."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightdet.models.losses.focal import binary_targets, expand_weight
from lightdet.models.losses.reduction import check_reduction, weight_reduce


class GHMCLoss(nn.Module):
    """Sigmoid cross-entropy re-weighted by the density of the gradient norm ``g = |sigmoid(x) - y|``.

    ``g`` is split into ``bins`` equal bins over ``[0, 1]``. Each valid element (weight > 0) gets the weight
    ``tot / (count of its bin * n)`` with ``tot`` the number of valid elements and ``n`` the number of
    non-empty bins, so that the many easy negatives (``g`` near 0) and the few outliers (``g`` near 1) do not
    dominate. With ``momentum > 0`` the bin counts are exponential moving averages over calls
    (``acc = m * acc + (1 - m) * count``; kept in a buffer that is not saved in checkpoints).

    Args:
        bins: number of gradient-norm bins.
        momentum: moving-average momentum of the bin counts (0: the current batch's counts).
        loss_weight, reduction: ``mean`` divides the weighted sum by ``tot`` (the loss defines its own
            normaliser, so an ``avg_factor`` given by the head is ignored).

    ``forward(pred [N, C] logits, target, weight=None, avg_factor=None)``: ``target`` int64 ``[N]`` labels
    (``C`` = background) or float ``[N, C]``; ``weight`` ``[N]`` or ``[N, C]`` (0 marks ignored elements).
    """

    def __init__(
        self, bins: int = 10, momentum: float = 0.75, *, loss_weight: float = 1.0, reduction: str = "mean"
    ) -> None:
        super().__init__()
        if bins < 1 or not 0 <= momentum < 1:
            raise ValueError(f"GHMCLoss: need bins >= 1 and 0 <= momentum < 1, got {bins}, {momentum}")
        self.bins, self.momentum = bins, momentum
        self.loss_weight = loss_weight
        self.reduction = check_reduction("GHMCLoss", reduction)
        self.register_buffer("edges", torch.arange(1, bins, dtype=torch.float32) / bins, persistent=False)
        self.register_buffer("acc_sum", torch.zeros(bins), persistent=False)

    @torch.no_grad()
    def harmonizing_weights(self, pred: Tensor, targets: Tensor, valid: Tensor) -> tuple[Tensor, float]:
        """``[N, C]`` weights ``tot / (bin count * n)`` (0 where not ``valid``) and ``tot``."""
        g = (pred.detach().float().sigmoid() - targets).abs()
        bin_index = torch.bucketize(g, self.edges, right=True)  # edges[i-1] <= g < edges[i]
        tot = max(float(valid.sum()), 1.0)
        counts = torch.bincount(bin_index[valid], minlength=self.bins).to(self.acc_sum)
        filled = counts > 0
        if self.momentum > 0:
            self.acc_sum[filled] = self.momentum * self.acc_sum[filled] + (1 - self.momentum) * counts[filled]
            counts = self.acc_sum
        per_bin = torch.where(filled, tot / counts.clamp(min=1e-12), torch.zeros_like(counts))
        n = max(int(filled.sum()), 1)
        weights = per_bin[bin_index] / n
        return weights.masked_fill(~valid, 0.0).to(pred.dtype), tot

    def forward(
        self, pred: Tensor, target: Tensor, weight: Tensor | None = None, avg_factor: float | None = None
    ) -> Tensor:
        targets = binary_targets(pred, target, "GHMCLoss")
        weight = expand_weight(weight, pred)
        valid = weight > 0 if weight is not None else torch.ones_like(targets, dtype=torch.bool)
        ghm_weights, tot = self.harmonizing_weights(pred, targets, valid)
        loss = F.binary_cross_entropy_with_logits(pred, targets, reduction="none")
        return self.loss_weight * weight_reduce(loss, ghm_weights, self.reduction, tot)

    def extra_repr(self) -> str:
        return (
            f"bins={self.bins}, momentum={self.momentum}, loss_weight={self.loss_weight}, "
            f"reduction={self.reduction!r}"
        )

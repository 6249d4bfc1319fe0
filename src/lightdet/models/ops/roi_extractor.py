"""RoIAlign over a feature pyramid, each RoI pooled from the level that matches its size."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable
from torchvision.ops import roi_align

LEVEL_MAPPINGS = ("mmdet", "torchvision")

#: fewest RoIs for which pooling is spread over threads on a CPU (below it, handing work over costs more)
MIN_ROIS_PER_THREAD = 32

_pool: tuple[int, int, ThreadPoolExecutor] | None = None  # (pid, threads, executor)


def roi_align_threads(feats: Tensor, num_rois: int) -> int:
    """How many threads :class:`MultiLevelRoIAlign` pools ``num_rois`` RoIs of ``feats`` on.

    torchvision's CPU ``roi_align`` kernel runs on one thread, so on a CPU the RoIs are split over
    ``torch.get_num_threads()`` threads (its intra-op count). Everything else pools on the calling thread: GPUs,
    small batches, autocast, and tracing or exporting (whose recording is thread-local).
    """
    threads = torch.get_num_threads()
    if (
        threads < 2
        or num_rois < 2 * MIN_ROIS_PER_THREAD
        or feats.device.type != "cpu"
        or type(feats) is not Tensor
        or torch.jit.is_tracing()
        or torch.compiler.is_compiling()
        or torch.compiler.is_exporting()
        or torch.is_autocast_enabled("cpu")
    ):
        return 1
    return min(threads, num_rois // MIN_ROIS_PER_THREAD)


def _executor() -> ThreadPoolExecutor:
    """The process's RoI pooling threads, one per intra-op thread (made again after a fork or a change of
    ``torch.set_num_threads``)."""
    global _pool
    threads = torch.get_num_threads()
    if _pool is None or _pool[0] != os.getpid() or _pool[1] != threads:
        _pool = (os.getpid(), threads, ThreadPoolExecutor(threads, thread_name_prefix="lightdet-roi-align"))
    return _pool[2]


def _roi_align_backward(grad: Tensor, rois: Tensor, feat_shape: torch.Size, args: tuple) -> Tensor:
    """torchvision's RoIAlign backward: ``grad [R, C', S, S]`` -> ``[B, C', H, W]`` for ``C'`` channels."""
    output_size, spatial_scale, sampling_ratio, aligned = args
    b, _, h, w = feat_shape
    return torch.ops.torchvision._roi_align_backward(
        grad.contiguous(), rois, spatial_scale, output_size, output_size, b, grad.shape[1], h, w,
        sampling_ratio, aligned,
    )  # fmt: skip


class _ThreadedRoIAlign(torch.autograd.Function):
    """RoIAlign whose forward splits the RoIs, and whose backward splits the channels, over ``workers``
    threads (torchvision's CPU kernels run on one). Splitting the backward by channels keeps each gradient
    element's sum in RoI order, so the result is that of one call."""

    @staticmethod
    def forward(ctx, feat: Tensor, rois: Tensor, args: tuple, workers: int) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(rois)
        ctx.feat_shape, ctx.args, ctx.workers = feat.shape, args, workers

        def pool(part: Tensor) -> Tensor:
            with torch.no_grad():
                return roi_align(feat, part, *args)

        return torch.cat(list(_executor().map(pool, rois.tensor_split(workers))))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (rois,) = ctx.saved_tensors

        def back(part: Tensor) -> Tensor:
            return _roi_align_backward(part, rois, ctx.feat_shape, ctx.args)

        parts = grad.tensor_split(ctx.workers, dim=1)
        return torch.cat(list(_executor().map(back, parts)), 1), None, None, None


def pool_rois(feat: Tensor, rois: Tensor, args: tuple, workers: int) -> Tensor:
    """``roi_align(feat, rois, *args)`` (``args``: output size, spatial scale, sampling ratio, aligned) with
    its RoIs, and its backward's channels, spread over ``workers`` threads when that is above 1."""
    workers = min(workers, rois.shape[0])
    if workers < 2:
        return roi_align(feat, rois, *args)
    if torch.is_grad_enabled() and feat.requires_grad:
        return _ThreadedRoIAlign.apply(feat, rois, args, workers)
    inference = torch.is_inference_mode_enabled()

    def pool(part: Tensor) -> Tensor:  # inference mode is per thread
        with torch.inference_mode(inference), torch.no_grad():
            return roi_align(feat, part, *args)

    return torch.cat(list(_executor().map(pool, rois.tensor_split(workers))))


class MultiLevelRoIAlign(nn.Module):
    """Pools ``output_size x output_size`` features for each RoI from one pyramid level.

    Level of a RoI of scale ``s = sqrt(w * h)`` (index into ``strides``), clamped to the available levels:

    * ``"mmdet"``: ``floor(log2(s / finest_scale + 1e-6))`` (MMDetection's ``SingleRoIExtractor``).
    * ``"torchvision"``: ``floor(k0 + log2(s / s0) + 1e-6) - k_min`` with ``k_min = log2(strides[0])``,
      ``k0 = k_min + 2`` and ``s0 = 4 * finest_scale`` (torchvision's ``LevelMapper``: ``k0 = 4``,
      ``s0 = 224`` for strides starting at 4 and ``finest_scale = 56``). Same rule, different rounding near
      level borders.

    Args:
        output_size: pooled height and width (7 for boxes, 14 for masks).
        strides: strides of the levels to pool from; the first ``len(strides)`` feature maps are used.
        sampling_ratio: RoIAlign samples per bin side (0: adaptive, MMDetection; 2: torchvision).
        aligned: shift RoIs by half a pixel (MMDetection: True; torchvision: False).
        finest_scale: RoI scale mapped to the boundary between the first two levels (56).
        level_mapping: ``"mmdet"`` or ``"torchvision"``.

    ``forward(feats, rois)``: ``rois [R, 5]`` rows ``(batch_index, x1, y1, x2, y2)`` in input pixels ->
    ``[R, C, output_size, output_size]``.
    """

    def __init__(
        self,
        output_size: int = 7,
        strides: Sequence[int] = (4, 8, 16, 32),
        *,
        sampling_ratio: int = 0,
        aligned: bool = True,
        finest_scale: float = 56.0,
        level_mapping: str = "mmdet",
    ) -> None:
        super().__init__()
        if level_mapping not in LEVEL_MAPPINGS:
            raise ValueError(
                f"MultiLevelRoIAlign level_mapping must be one of {LEVEL_MAPPINGS}, got {level_mapping!r}"
            )
        self.output_size = output_size
        self.strides = [int(s) for s in strides]
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned
        self.finest_scale = finest_scale
        self.level_mapping = level_mapping

    def map_levels(self, rois: Tensor) -> Tensor:
        """``rois [R, 5]`` -> ``int64 [R]`` level index in ``0 .. len(strides) - 1``."""
        scale = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
        num_levels = len(self.strides)
        if self.level_mapping == "mmdet":
            level = torch.floor(torch.log2(scale / self.finest_scale + 1e-6))
            return level.clamp(0, num_levels - 1).to(torch.int64)
        k_min = math.log2(self.strides[0])
        k0, s0 = k_min + 2, 4 * self.finest_scale
        level = torch.floor(k0 + torch.log2(scale / s0) + 1e-6)
        return (level.clamp(k_min, k_min + num_levels - 1) - k_min).to(torch.int64)

    def forward(self, feats: Sequence[Tensor], rois: Tensor) -> Tensor:
        if len(feats) < len(self.strides):
            raise ValueError(f"MultiLevelRoIAlign needs {len(self.strides)} feature maps, got {len(feats)}")
        out = feats[0].new_zeros((rois.shape[0], feats[0].shape[1], self.output_size, self.output_size))
        if rois.shape[0] == 0:
            return out
        levels = self.map_levels(rois)
        workers = roi_align_threads(feats[0], rois.shape[0])
        for i, stride in enumerate(self.strides):
            idx = torch.nonzero(levels == i).squeeze(1)
            if idx.numel() == 0:
                continue
            args = (self.output_size, 1.0 / stride, self.sampling_ratio, self.aligned)
            out[idx] = pool_rois(feats[i], rois[idx], args, workers).to(out.dtype)
        return out

    def pools_like(self, other: object) -> bool:
        """Whether ``other`` pools the same features from the same inputs (same class and settings), so that
        one call can serve both (a cascade's mask heads pool the same detections at test time)."""
        return type(other) is type(self) and other.extra_repr() == self.extra_repr()

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, strides={self.strides}, sampling_ratio={self.sampling_ratio}, "
            f"aligned={self.aligned}, finest_scale={self.finest_scale}, level_mapping={self.level_mapping!r}"
        )

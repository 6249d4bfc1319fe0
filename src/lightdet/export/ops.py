"""Traceable tensor pieces of the export graphs.

Every function here runs eagerly, under ``torch.jit.trace`` (also the ONNX exporter's path) and under
``torch.export``, and gives the same values in all three: sizes read from tensors stay symbolic (tracing
returns 0-dim tensors for ``x.shape[i]``, ``torch.export`` symbolic integers), there is no Python branch on
data, and NMS is one ``torchvision.ops.nms`` call, which the ONNX exporter writes as ``NonMaxSuppression``.

Detections of a batch are kept flat: ``[N, ...]`` rows with a ``batch_index [N]`` saying whose image each row
belongs to, so that one NMS and one RoIAlign serve the whole batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.ops import nms, roi_align

from lightdet.models.ops.anchors import AnchorGenerator
from lightdet.models.ops.points import PointGenerator
from lightdet.models.ops.roi_extractor import MultiLevelRoIAlign

#: A size read from a tensor's shape: an ``int`` eagerly, a 0-dim tensor under tracing, a symbolic integer
#: under ``torch.export``.
Size = int | Tensor


def clip_to_image(boxes: Tensor, height: Size, width: Size) -> Tensor:
    """Clips ``[..., 4]`` xyxy boxes to ``[0, width] x [0, height]`` (as :func:`lightdet.structures.clip_boxes`)."""
    if isinstance(height, Tensor):
        limit = torch.stack([width, height, width, height]).to(boxes.dtype)
        return torch.minimum(boxes.clamp(min=0), limit)
    x1, y1, x2, y2 = boxes.unbind(-1)
    return torch.stack([x1.clamp(0, width), y1.clamp(0, height), x2.clamp(0, width), y2.clamp(0, height)], -1)


def topk_count(x: Tensor, k: int, dim: int) -> Size:
    """``min(k, x.shape[dim])`` in a form that stays symbolic when tracing (the ``k`` of ``Tensor.topk``)."""
    n = x.shape[dim]
    if isinstance(n, Tensor):
        return torch.clamp(n, max=k)
    return torch.sym_min(k, n)


def batch_positions(like: Tensor) -> Tensor:
    """``int64 [B, n]``: the image index of each position of a ``[B, n, ...]`` tensor."""
    return torch.arange(like.shape[0], device=like.device)[:, None].expand(like.shape[0], like.shape[1])


def grouped_nms(boxes: Tensor, scores: Tensor, groups: Tensor, iou_threshold: float) -> Tensor:
    """NMS within each group (an image's class or level): ``torchvision.ops.batched_nms``'s coordinate trick.

    Boxes of different groups are shifted apart by ``group * (max coordinate + 1)`` so that one ``nms``
    never suppresses across groups. An empty input gives an empty result without a branch.

    Returns:
        ``int64 [K]`` indices of the kept boxes, by decreasing score.
    """
    top = torch.cat([boxes.reshape(-1), boxes.new_zeros(1)]).max()
    shifted = boxes + (groups.to(boxes.dtype) * (top + 1))[:, None]
    return nms(shifted, scores, iou_threshold)


def rank_in_image(batch_index: Tensor, batch_size: Size) -> Tensor:
    """``int64 [N]``: each row's position among the rows of its image, in the given (score) order."""
    one_hot = (batch_index[:, None] == torch.arange(batch_size, device=batch_index.device)[None]).long()
    return (one_hot.cumsum(0) * one_hot).sum(1) - 1


def keep_per_image(keep: Tensor, batch_index: Tensor, batch_size: Size, limit: int) -> Tensor:
    """The first ``limit`` of ``keep`` (indices sorted by score) within each image (``limit < 0``: all)."""
    if limit < 0:
        return keep
    return keep[rank_in_image(batch_index[keep], batch_size) < limit]


def grid_anchors(
    generator: AnchorGenerator, feats: Sequence[Tensor], padded: tuple[Size, Size]
) -> list[Tensor]:
    """Per level ``[H*W*A, 4]`` anchors, as :class:`AnchorGenerator` places them, from symbolic sizes."""
    out = []
    for level, feat in enumerate(feats):
        h, w = feat.shape[-2:]
        if generator.strides_from_image:
            sy, sx = padded[0] // h, padded[1] // w
        else:
            sy = sx = generator.strides[level]
        ys = torch.arange(h, device=feat.device, dtype=torch.float32) * sy
        xs = torch.arange(w, device=feat.device, dtype=torch.float32) * sx
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        shifts = torch.stack([xx, yy, xx, yy], dim=-1).reshape(-1, 1, 4)  # [H*W, 1, 4]
        out.append((shifts + generator.base_anchors[level].to(feat.device)[None]).reshape(-1, 4))
    return out


def grid_points(
    generator: PointGenerator, feats: Sequence[Tensor], padded: tuple[Size, Size]
) -> list[Tensor]:
    """Per level ``[H*W, 2]`` (x, y) points, as :class:`PointGenerator` places them, from symbolic sizes."""
    out = []
    for level, feat in enumerate(feats):
        h, w = feat.shape[-2:]
        if generator.strides_from_image:
            sy, sx = padded[0] // h, padded[1] // w
        else:
            sy = sx = generator.strides[level]
        ys = (torch.arange(h, device=feat.device, dtype=torch.float32) + generator.offset) * sy
        xs = (torch.arange(w, device=feat.device, dtype=torch.float32) + generator.offset) * sx
        yy, xx = torch.meshgrid(ys, xs, indexing="ij")
        out.append(torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=-1))
    return out


def multi_level_roi_align(extractor: MultiLevelRoIAlign, feats: Sequence[Tensor], rois: Tensor) -> Tensor:
    """:class:`MultiLevelRoIAlign` without its data-dependent branches: every level pools its RoIs (possibly
    none), the pooled rows are concatenated level by level and one gather puts them back in the RoIs' order.
    ``rois [R, 5]`` -> ``[R, C, S, S]``.

    One gather of the result replaces a scatter per level into a zero tensor: ONNX's ``ScatterND`` copies its
    whole data tensor on every call, which cost Cascade Mask R-CNN about 150 ms per image in ONNX Runtime.
    """
    size = extractor.output_size
    levels = extractor.map_levels(rois)
    picked, pooled = [], []
    for level, stride in enumerate(extractor.strides):
        index = torch.nonzero(levels == level).squeeze(1)
        picked.append(index)
        pooled.append(
            roi_align(  # in the RoIs' float32 also when the network runs in float16
                feats[level].to(rois.dtype),
                rois[index],
                size,
                spatial_scale=1.0 / stride,
                sampling_ratio=extractor.sampling_ratio,
                aligned=extractor.aligned,
            )
        )
    order = torch.cat(picked)  # row i of the concatenation pooled RoI order[i]; each RoI is in one level
    return torch.cat(pooled).to(feats[0].dtype)[torch.argsort(order)]


def query_topk(
    logits: Tensor, boxes: Tensor, k: int, height: Size, width: Size
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """NMS-free post-processing of a DETR for a :class:`~lightdet.export.graph.GraphHead`: sigmoid scores, the
    top ``k`` (query, class) pairs per image, normalised cxcywh boxes to xyxy pixels of ``height x width``.

    Args:
        logits: ``[B, Q, K]`` class logits; boxes: ``[B, Q, 4]`` normalised ``(cx, cy, w, h)``.

    Returns:
        flat ``(boxes [B*k, 4], scores [B*k], labels [B*k], batch_index [B*k])``, each image's rows by score.
    """
    num_classes = logits.shape[2]
    flat = logits.sigmoid().flatten(1)
    scores, index = flat.topk(topk_count(flat, k, 1), dim=1)  # [B, k]
    query = torch.div(index, num_classes, rounding_mode="floor")
    cx, cy, w, h = boxes.unbind(-1)
    xyxy = torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], -1)
    if isinstance(height, Tensor):
        scale = torch.stack([width, height, width, height]).to(boxes.dtype)
    else:
        scale = torch.tensor([width, height, width, height], dtype=boxes.dtype, device=boxes.device)
    picked = (xyxy * scale).gather(1, query[..., None].expand(-1, -1, 4))
    batch = batch_positions(scores)
    return (
        picked.reshape(-1, 4).float(),
        scores.reshape(-1).float(),
        (index % num_classes).reshape(-1),
        batch.reshape(-1),
    )

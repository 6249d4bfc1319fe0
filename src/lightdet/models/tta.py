"""Test-time augmentation: predict on rescaled and flipped copies of a batch and merge the detections.

:class:`TestTimeAugmentation` wraps any detector with ``predict(DetBatch) -> list[Detections]`` (two-stage
and one-stage alike). Every view's detections come back in the original image's pixels (the detector maps
them through ``meta.scale_factor`` and ``meta.flip``), so merging is a per-image operation on boxes:
class-wise NMS or weighted box fusion (:func:`merge_detections`), which sliced inference reuses.

The wrapper's state dict is the detector's own (no ``detector.`` prefix), so a checkpoint of the plain
detector loads into the wrapped one and the other way round.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms, box_iou

from lightdet.structures import DetBatch, Detections, ImageMeta

__all__ = ["MergeMethod", "TestTimeAugmentation", "augmented_batch", "merge_detections", "weighted_box_fusion"]

MergeMethod = Literal["nms", "wbf"]
_WRAPPED = "detector."


def _resize_image(image: Tensor, size: tuple[int, int]) -> Tensor:
    """``uint8 [3, h, w]`` -> ``uint8 [3, *size]`` (bilinear, antialiased when shrinking)."""
    if tuple(image.shape[-2:]) == size:
        return image
    resized = F.interpolate(image[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    return resized[0].round().clamp(0, 255).to(torch.uint8)


def _view(image: Tensor, meta: ImageMeta, scale: float, flip: bool) -> tuple[Tensor, ImageMeta]:
    """One image's valid region rescaled by ``scale`` (and mirrored), with the meta that maps it back."""
    h, w = meta.img_size
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    pixels = _resize_image(image[:, :h, :w], size)
    if flip:
        pixels = pixels.flip(-1)
    sx, sy = meta.scale_factor
    view_meta = replace(
        meta, img_size=size, scale_factor=(sx * size[1] / w, sy * size[0] / h), flip=meta.flip != flip
    )
    return pixels, view_meta


def augmented_batch(batch: DetBatch, scale: float, flip: bool) -> DetBatch:
    """``batch`` with every image rescaled by ``scale`` and mirrored when ``flip``; metas updated to match.

    Ground-truth fields are emptied: a view is only for ``predict``.
    """
    views = [_view(image, meta, scale, flip) for image, meta in zip(batch.images, batch.metas)]
    height = max(p.shape[1] for p, _ in views)
    width = max(p.shape[2] for p, _ in views)
    images = batch.images.new_zeros((len(views), 3, height, width))
    for i, (pixels, _) in enumerate(views):
        images[i, :, : pixels.shape[1], : pixels.shape[2]] = pixels
    device = batch.images.device
    return DetBatch(
        images=images,
        boxes=[torch.zeros((0, 4), dtype=torch.float32, device=device) for _ in views],
        labels=[torch.zeros((0,), dtype=torch.int64, device=device) for _ in views],
        ignore=[torch.zeros((0,), dtype=torch.bool, device=device) for _ in views],
        metas=[m for _, m in views],
    )


def _concat(detections: Sequence[Detections]) -> Detections:
    """Several detection sets of one image -> one (masks kept only when every set has them)."""
    with_masks = all(d.masks is not None for d in detections)
    return Detections(
        boxes=torch.cat([d.boxes for d in detections]),
        scores=torch.cat([d.scores for d in detections]),
        labels=torch.cat([d.labels for d in detections]),
        masks=torch.cat([d.masks for d in detections]) if with_masks else None,  # type: ignore[misc]
    )


def _clusters(boxes: Tensor, scores: Tensor, labels: Tensor, iou_thr: float) -> tuple[Tensor, Tensor]:
    """NMS clusters: the kept boxes ``[C]`` and, per box ``[N]``, the index of the kept box it belongs to.

    A box belongs to the highest-scoring kept box of its class that it overlaps by more than ``iou_thr``,
    which is the box that suppressed it in NMS (a kept box belongs to itself).
    """
    keep = batched_nms(boxes, scores, labels, iou_thr)  # [C], by decreasing score
    iou = box_iou(boxes[keep], boxes)  # [C, N]
    same_class = labels[keep][:, None] == labels[None, :]
    member = (iou > iou_thr) & same_class
    member[torch.arange(len(keep), device=boxes.device), keep] = True
    # The first True along dim 0 is the highest-scoring kept box that claims the box.
    owner = member.to(torch.uint8).argmax(0)
    return keep, owner


def weighted_box_fusion(
    detections: Detections, *, iou_thr: float = 0.55, num_views: int = 1, max_per_img: int = 100
) -> Detections:
    """Fuses overlapping same-class boxes into their score-weighted average (weighted box fusion).

    Boxes are clustered as NMS would suppress them (each box joins the highest-scoring box of its class that
    overlaps it by more than ``iou_thr``). A cluster's box is the score-weighted mean of its members; its
    score is the sum of their scores divided by ``max(num_views, cluster size)``, so an object that only
    one of several views found is down-weighted (Solovyev et al., "Weighted boxes fusion", 2021).
    A cluster keeps the mask of its best box.

    Args:
        detections: one image's detections from all views, concatenated.
        num_views: how many predictions were merged (augmented views, or tiles covering the box).
    """
    if len(detections) == 0:
        return detections
    boxes, scores = detections.boxes, detections.scores
    keep, owner = _clusters(boxes, scores, detections.labels, iou_thr)
    clusters = len(keep)
    weights = torch.zeros(clusters, device=boxes.device).index_add_(0, owner, scores)
    fused = torch.zeros((clusters, 4), device=boxes.device).index_add_(0, owner, boxes * scores[:, None])
    fused = fused / weights.clamp(min=1e-12)[:, None]
    # A mean lies within its members' extent; clamping removes the rounding that could leave it outside.
    members = owner[:, None].expand(-1, 4)
    low = boxes.new_full((clusters, 4), float("inf")).scatter_reduce_(0, members, boxes, "amin")
    high = boxes.new_full((clusters, 4), float("-inf")).scatter_reduce_(0, members, boxes, "amax")
    fused = torch.maximum(torch.minimum(fused, high), low)
    sizes = torch.zeros(clusters, device=boxes.device).index_add_(0, owner, torch.ones_like(scores))
    fused_scores = weights / sizes.clamp(min=float(num_views))
    order = fused_scores.argsort(descending=True)[:max_per_img]
    masks = None if detections.masks is None else detections.masks[keep][order]
    return Detections(boxes=fused[order], scores=fused_scores[order], labels=detections.labels[keep][order], masks=masks)


def merge_detections(
    detections: Sequence[Detections],
    *,
    method: MergeMethod = "nms",
    iou_thr: float = 0.5,
    max_per_img: int = 100,
    num_views: int | None = None,
) -> Detections:
    """Merges several predictions of one image (augmented views, tiles) into one set.

    Args:
        detections: each in the same (original) image's pixels.
        method: ``"nms"`` keeps the best box of each overlapping same-class group; ``"wbf"`` averages the
            group (:func:`weighted_box_fusion`, with ``len(detections)`` views).
        iou_thr: the overlap above which two same-class boxes are one object.
        max_per_img: the highest-scoring merged boxes kept.
        num_views: how many of ``detections`` could each have seen an object, for ``"wbf"``'s scores;
            None: all of them (augmented views of the whole image). Tiles see an object once: 1.
    """
    if method not in ("nms", "wbf"):
        raise ValueError(f"merge method {method!r}: expected 'nms' or 'wbf'")
    merged = _concat(detections)
    if method == "wbf":
        views = len(detections) if num_views is None else num_views
        return weighted_box_fusion(merged, iou_thr=iou_thr, num_views=views, max_per_img=max_per_img)
    keep = batched_nms(merged.boxes, merged.scores, merged.labels, iou_thr)[:max_per_img]
    return merged[keep]


class TestTimeAugmentation(nn.Module):
    """Predicts on every (scale, flip) view of a batch and merges each image's detections.

    Args:
        detector: a detector with ``predict(DetBatch) -> list[Detections]`` (e.g.
            :class:`~lightdet.models.TwoStageDetector`, :class:`~lightdet.models.SingleStageDetector`).
        scales: factors applied to the test pipeline's image size (1.0 is the size the model was tested at).
        flip: also predict on the horizontally mirrored copy of every scale.
        merge: ``"nms"`` or ``"wbf"`` (see :func:`merge_detections`).
        iou_thr: the merge's same-object overlap.
        max_per_img: detections kept per image after merging.

    ``loss`` is the detector's (training never augments at test time); ``state_dict`` and ``load_state_dict``
    read and write the detector's keys unchanged.
    """

    def __init__(
        self,
        detector: nn.Module,
        scales: Sequence[float] = (1.0,),
        flip: bool = True,
        *,
        merge: MergeMethod = "nms",
        iou_thr: float = 0.5,
        max_per_img: int = 100,
    ) -> None:
        super().__init__()
        if not scales or any(s <= 0 for s in scales):
            raise ValueError(f"TestTimeAugmentation: scales must be positive factors, got {list(scales)}")
        if merge not in ("nms", "wbf"):
            raise ValueError(f"TestTimeAugmentation: merge must be 'nms' or 'wbf', got {merge!r}")
        self.detector = detector
        self.views = [(float(s), f) for s in scales for f in ((False, True) if flip else (False,))]
        self.merge, self.iou_thr, self.max_per_img = merge, iou_thr, max_per_img
        self._register_state_dict_hook(_strip_wrapper_prefix)
        self._register_load_state_dict_pre_hook(_add_wrapper_prefix)

    def loss(self, batch: DetBatch) -> dict[str, Tensor]:
        """The detector's losses, on the batch as given."""
        return self.detector.loss(batch)

    @torch.no_grad()
    def predict(self, batch: DetBatch) -> list[Detections]:
        """One :class:`Detections` per image (original pixels): every view's predictions, merged."""
        per_view = [self.detector.predict(augmented_batch(batch, s, f)) for s, f in self.views]
        return [
            merge_detections(
                [view[i] for view in per_view], method=self.merge, iou_thr=self.iou_thr, max_per_img=self.max_per_img
            )
            for i in range(len(batch))
        ]

    def extra_repr(self) -> str:
        return f"views={self.views}, merge={self.merge!r}, iou_thr={self.iou_thr}, max_per_img={self.max_per_img}"


def _strip_wrapper_prefix(module: nn.Module, state: dict[str, Any], prefix: str, _: Any) -> None:
    """State-dict hook: ``<prefix>detector.x`` -> ``<prefix>x``, the plain detector's key."""
    for key in [k for k in state if k.startswith(prefix + _WRAPPED)]:
        state[prefix + key[len(prefix + _WRAPPED) :]] = state.pop(key)


def _add_wrapper_prefix(state: dict[str, Any], prefix: str, *_: Any) -> None:
    """Load pre-hook: a plain detector's ``<prefix>x`` -> ``<prefix>detector.x`` (wrapped keys pass as they are)."""
    for key in [k for k in state if k.startswith(prefix) and not k.startswith(prefix + _WRAPPED)]:
        state[prefix + _WRAPPED + key[len(prefix) :]] = state.pop(key)

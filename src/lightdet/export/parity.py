"""Comparing an exported model's detections with the eager model's: matched fraction, worst differences.

Detections are matched per image and label: each reference detection (by decreasing score) takes the
unmatched candidate of its label with the nearest box (largest coordinate difference). A pair counts as
matched when its boxes agree within ``box_tol`` pixels and its scores within ``score_tol``. The matched
fraction is over the larger of the two detection counts, so missing and extra detections both count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lightdet.export.errors import ParityError
from lightdet.structures import Detections


@dataclass
class ParityReport:
    """The outcome of :func:`compare_detections`.

    Attributes:
        total: the larger detection count, summed over images.
        matched: pairs within both tolerances.
        worst_box: the largest box coordinate difference (pixels) over all nearest pairs.
        worst_score: the largest score difference over all nearest pairs.
        worst_where: where ``worst_box`` occurred (image, label, both boxes).
        mask_iou: intersection over union of all matched pairs' masks pooled (None without masks).
        worst_mask_iou: the lowest single mask IoU of a matched pair (None without masks).
    """

    total: int
    matched: int
    worst_box: float
    worst_score: float
    worst_where: str
    mask_iou: float | None = None
    worst_mask_iou: float | None = None

    @property
    def matched_fraction(self) -> float:
        return self.matched / self.total if self.total else 1.0

    def __str__(self) -> str:
        masks = (
            ""
            if self.mask_iou is None
            else (f", mask IoU {self.mask_iou:.4f} (worst single mask {self.worst_mask_iou:.4f})")
        )
        return (
            f"{self.matched}/{self.total} detections matched ({100 * self.matched_fraction:.2f}%), worst box "
            f"difference {self.worst_box:.3g} px ({self.worst_where}), worst score difference "
            f"{self.worst_score:.3g}{masks}"
        )


@dataclass
class _Pairs:
    """Nearest pairs of one image: reference and candidate indices, box and score differences."""

    ref: list[int]
    cand: list[int]
    box: list[float]
    score: list[float]


def _pair_image(ref: Detections, cand: Detections) -> _Pairs:
    """Greedy nearest same-label pairs (reference by decreasing score)."""
    pairs = _Pairs([], [], [], [])
    if len(ref) == 0 or len(cand) == 0:
        return pairs
    dist = (ref.boxes[:, None, :] - cand.boxes[None, :, :]).abs().amax(-1).double()  # [Nr, Nc]
    dist[ref.labels[:, None] != cand.labels[None, :]] = float("inf")
    for i in torch.argsort(ref.scores, descending=True, stable=True).tolist():
        j = int(dist[i].argmin())
        if not torch.isfinite(dist[i, j]):
            continue
        pairs.ref.append(i)
        pairs.cand.append(j)
        pairs.box.append(float(dist[i, j]))
        pairs.score.append(float((ref.scores[i] - cand.scores[j]).abs()))
        dist[:, j] = float("inf")
    return pairs


def _mask_overlap(
    ref: Detections, cand: Detections, pairs: _Pairs, keep: list[bool]
) -> tuple[int, int, float]:
    """Pooled intersection and union of the kept pairs' masks, and their lowest single IoU."""
    inter = union = 0
    worst = 1.0
    for i, j, k in zip(pairs.ref, pairs.cand, keep):
        if not k:
            continue
        a, b = ref.masks[i].bool(), cand.masks[j].bool()  # type: ignore[index]
        n_inter, n_union = int((a & b).sum()), int((a | b).sum())
        inter, union = inter + n_inter, union + n_union
        worst = min(worst, n_inter / n_union if n_union else 1.0)
    return inter, union, worst


def compare_detections(
    reference: Sequence[Detections],
    candidate: Sequence[Detections],
    *,
    box_tol: float = 1e-2,
    score_tol: float = 1e-4,
) -> ParityReport:
    """Matches ``candidate`` detections to ``reference`` ones image by image (see the module docstring)."""
    if len(reference) != len(candidate):
        raise ValueError(
            f"compare_detections: {len(reference)} reference images, {len(candidate)} candidates"
        )
    total = matched = inter = union = 0
    worst_box = worst_score = 0.0
    worst_where, worst_mask = "no pairs", 1.0
    with_masks = all(d.masks is not None for d in [*reference, *candidate])
    for image, (ref, cand) in enumerate(zip(reference, candidate)):
        ref, cand = ref.to("cpu"), cand.to("cpu")
        pairs = _pair_image(ref, cand)
        keep = [b <= box_tol and s <= score_tol for b, s in zip(pairs.box, pairs.score)]
        total += max(len(ref), len(cand))
        matched += sum(keep)
        worst_score = max([worst_score, *pairs.score])
        for i, j, b in zip(pairs.ref, pairs.cand, pairs.box):
            if b >= worst_box:
                worst_box = b
                worst_where = f"image {image}, label {int(ref.labels[i])}: {ref.boxes[i].tolist()} vs {cand.boxes[j].tolist()}"
        if with_masks:
            n_inter, n_union, low = _mask_overlap(ref, cand, pairs, keep)
            inter, union, worst_mask = inter + n_inter, union + n_union, min(worst_mask, low)
    return ParityReport(
        total=total,
        matched=matched,
        worst_box=worst_box,
        worst_score=worst_score,
        worst_where=worst_where,
        mask_iou=(inter / union if union else 1.0) if with_masks else None,
        worst_mask_iou=worst_mask if with_masks else None,
    )


def assert_parity(
    reference: Sequence[Detections],
    candidate: Sequence[Detections],
    *,
    min_matched: float = 0.99,
    box_tol: float = 1e-2,
    score_tol: float = 1e-4,
    min_mask_iou: float = 0.99,
    what: str = "exported model",
) -> ParityReport:
    """:func:`compare_detections`, raising :class:`ParityError` with the report when the outputs differ.

    Raises:
        ParityError: fewer than ``min_matched`` of the detections matched, or the pooled mask IoU is below
            ``min_mask_iou``; the message gives the worst box and score differences.
    """
    report = compare_detections(reference, candidate, box_tol=box_tol, score_tol=score_tol)
    masks_ok = report.mask_iou is None or report.mask_iou >= min_mask_iou
    if report.matched_fraction < min_matched or not masks_ok:
        raise ParityError(
            f"{what} differs from the eager model: {report} (tolerances: boxes {box_tol} px, scores "
            f"{score_tol}, at least {100 * min_matched:.0f}% matched, mask IoU >= {min_mask_iou})"
        )
    return report

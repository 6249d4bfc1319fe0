"""Anchors with sizes listed per level, as torchvision's ``AnchorGenerator(sizes, aspect_ratios)``."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lightdet.models.ops.anchors import AnchorGenerator


class SizedAnchorGenerator(AnchorGenerator):
    """An :class:`AnchorGenerator` whose level ``i`` has the anchor sizes ``sizes[i]`` (all ratios each).

    torchvision's RetinaNet lists truncated sizes, ``(32, 40, 50), (64, 80, 101), ...``, which no set of
    shared scales reproduces on every level; this generator takes them as given. Placement (``center_offset``,
    ``round_base_anchors``, ``strides_from_image``) and the ``(H, W, A)`` order are the parent's.

    Args:
        strides: pyramid strides.
        sizes: per level, the anchor sizes (the same count on every level).
        ratios: aspect ratios ``h / w``; base anchors are ratio-major as in the parent.
    """

    def __init__(
        self,
        strides: Sequence[int],
        sizes: Sequence[Sequence[float]],
        ratios: Sequence[float] = (0.5, 1.0, 2.0),
        *,
        center_offset: float = 0.0,
        round_base_anchors: bool = False,
        strides_from_image: bool = False,
    ) -> None:
        counts = {len(s) for s in sizes}
        if len(sizes) != len(strides) or len(counts) != 1:
            raise ValueError(
                f"SizedAnchorGenerator: need one equally long size list per stride, got {len(sizes)} lists "
                f"of lengths {sorted(counts)} for {len(strides)} strides"
            )
        self.sizes = [[float(x) for x in level] for level in sizes]
        super().__init__(
            strides, ratios, scales=[1.0] * counts.pop(), base_sizes=[1.0] * len(strides),
            center_offset=center_offset, round_base_anchors=round_base_anchors,
            strides_from_image=strides_from_image,
        )
        self.base_anchors = [self._sized_base_anchors(s, st) for s, st in zip(self.sizes, self.strides)]

    def _sized_base_anchors(self, sizes: list[float], stride: int) -> torch.Tensor:
        """``[A, 4]`` anchors of the given sizes at the first position of a level, ratio-major."""
        h_ratios = torch.tensor(self.ratios).sqrt()
        sizes_t = torch.tensor(sizes)
        ws = (sizes_t[None, :] / h_ratios[:, None]).reshape(-1)
        hs = (sizes_t[None, :] * h_ratios[:, None]).reshape(-1)
        c = self.center_offset * stride
        anchors = torch.stack([c - 0.5 * ws, c - 0.5 * hs, c + 0.5 * ws, c + 0.5 * hs], dim=-1)
        return anchors.round() if self.round_base_anchors else anchors

    def __repr__(self) -> str:
        return (
            f"SizedAnchorGenerator(strides={self.strides}, sizes={self.sizes}, ratios={self.ratios}, "
            f"center_offset={self.center_offset}, round_base_anchors={self.round_base_anchors}, "
            f"strides_from_image={self.strides_from_image})"
        )

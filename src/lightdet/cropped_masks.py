"""Instance masks held as the bitmap of each instance's own rectangle of the image.

:class:`CroppedMasks` stands for one image's ``uint8 [N, H, W]`` 0/1 instance bitmaps but stores, per
instance, only an integer rectangle (its *region*) that holds every set pixel of the instance: the region
table ``int64 [N, 4]`` ``(x0, y0, x1, y1)`` and the regions' pixels, row-major, one region after the other,
in one flat ``uint8`` buffer (two tensors: one pin, one copy to the device). Outside its region an instance
is 0. A COCO-sized image (800 x 1333, 50 instances) takes 53 MB as full bitmaps, a few MB as regions.

Every operation the data pipeline applies to masks (resize, flip, crop / pad / paste, affine warp,
selection, erasing) is defined by what it does to the full bitmaps and computed on the regions only; the
result is the same masks, bit for bit (``tests/test_cropped_masks.py`` checks each against the full-bitmap
operation). Regions need not be tight: an operation may leave rows of zeros in them (:meth:`tighten`
removes them); an instance that loses all its pixels may keep an empty region.

The geometric operations loop over instances, each working on its own crop (a slice or an index gather
of a few rows and columns): per instance that costs microseconds, while one gather over all pixels at once
would need ``int64`` index tensors several times the size of the masks themselves. Indexing and iteration
follow the ``[N, H, W]`` tensor the masks stand for: ``masks[i]`` and ``masks[i, ys, xs]`` read instance
``i``'s bitmap, ``masks[keep]`` (a boolean or index tensor, list or slice) selects instances.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["CroppedMasks"]


def _extents(masks: Tensor) -> Tensor:
    """``[N, H, W]`` -> ``int64 [N, 4]`` the tight ``(x0, y0, x1, y1)`` of each mask's set pixels, zeros if none."""
    n, h, w = masks.shape
    rows, cols = masks.bool().any(2), masks.bool().any(1)  # [N, H], [N, W]
    y0, x0 = rows.byte().argmax(1), cols.byte().argmax(1)
    y1, x1 = h - rows.flip(1).byte().argmax(1), w - cols.flip(1).byte().argmax(1)
    return torch.stack([x0, y0, x1, y1], 1).reshape(n, 4) * cols.any(1, keepdim=True)


def _canonical(regions: Tensor) -> Tensor:
    """Regions with empty ones set to ``(0, 0, 0, 0)``."""
    empty = (regions[:, 2] <= regions[:, 0]) | (regions[:, 3] <= regions[:, 1])
    return regions.masked_fill(empty[:, None], 0)


def _nearest_exact_source(in_size: int, out_size: int) -> Tensor:
    """``int64 [out_size]``: the input row (or column) each output row takes in torch's ``nearest-exact``
    resize (torchvision's ``InterpolationMode.NEAREST_EXACT``), read off the resize of an index ramp."""
    ramp = torch.arange(in_size, dtype=torch.float32).view(1, 1, in_size, 1)
    return F.interpolate(ramp, size=(out_size, 1), mode="nearest-exact").view(out_size).long()


@dataclass(frozen=True, eq=False, repr=False)
class CroppedMasks:
    """One image's instance masks, each stored as the bitmap of its region (see the module docstring).

    Attributes:
        pixels: ``uint8 [P]`` 0/1, the regions' pixels row-major, region after region (``P`` the sum of
            the regions' areas).
        regions: ``int64 [N, 4]`` ``(x0, y0, x1, y1)`` integer pixels within the image; every set pixel of
            instance ``i`` lies in region ``i``.
        image_size: ``(H, W)`` of the image the masks belong to.
    """

    pixels: Tensor
    regions: Tensor
    image_size: tuple[int, int]

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", (int(self.image_size[0]), int(self.image_size[1])))
        if self.pixels.dtype != torch.uint8 or self.pixels.dim() != 1:
            raise ValueError(
                f"CroppedMasks.pixels must be uint8 [P], got {self.pixels.dtype} {tuple(self.pixels.shape)}"
            )
        if self.regions.dtype != torch.int64 or self.regions.dim() != 2 or self.regions.shape[1] != 4:
            raise ValueError(
                f"CroppedMasks.regions must be int64 [N, 4], got {self.regions.dtype} {tuple(self.regions.shape)}"
            )
        if self.regions.device.type == "cpu":  # data-dependent checks only where they cost no device sync
            h, w = self.image_size
            r = self.regions
            inside = (r[:, 0] >= 0) & (r[:, 1] >= 0) & (r[:, 2] <= w) & (r[:, 3] <= h)
            if not bool((inside & (r[:, 2] >= r[:, 0]) & (r[:, 3] >= r[:, 1])).all()):
                raise ValueError(f"CroppedMasks: regions must be ordered and lie within the {h}x{w} image")
            if int(self.areas().sum()) != self.pixels.numel():
                raise ValueError(
                    f"CroppedMasks: {self.pixels.numel()} pixels for regions of {int(self.areas().sum())}"
                )

    # -- construction ----------------------------------------------------------------------------------

    @classmethod
    def empty(cls, image_size: tuple[int, int], device: torch.device | str = "cpu") -> CroppedMasks:
        """No instance, on an image of ``image_size = (H, W)``."""
        return cls(
            torch.zeros(0, dtype=torch.uint8, device=device),
            torch.zeros((0, 4), dtype=torch.int64, device=device),
            image_size,
        )

    @classmethod
    def from_bitmaps(cls, masks: Tensor) -> CroppedMasks:
        """Full bitmaps ``uint8/bool [N, H, W]`` -> each cropped to the tight box of its set pixels."""
        regions = _extents(masks)
        crops = [m[y0:y1, x0:x1] for m, (x0, y0, x1, y1) in zip(masks, regions.tolist())]
        return cls.from_crops(crops, regions, (int(masks.shape[1]), int(masks.shape[2])))

    @classmethod
    def from_crops(
        cls, crops: Sequence[Tensor], regions: Tensor, image_size: tuple[int, int]
    ) -> CroppedMasks:
        """Packs per-instance crops (``[h_i, w_i]`` of their region's size, 0/1 of any dtype) into one buffer."""
        regions = _canonical(regions.to(torch.int64).reshape(-1, 4))
        if len(crops) != len(regions):
            raise ValueError(f"CroppedMasks.from_crops: {len(crops)} crops for {len(regions)} regions")
        sizes = torch.stack([regions[:, 3] - regions[:, 1], regions[:, 2] - regions[:, 0]], 1).tolist()
        pixels = torch.empty(sum(h * w for h, w in sizes), dtype=torch.uint8, device=regions.device)
        start = 0
        for crop, (h, w) in zip(crops, sizes):
            fits = (
                tuple(crop.shape) == (h, w) if h * w else crop.numel() == 0
            )  # an empty region: any empty crop
            if not fits:
                raise ValueError(
                    f"CroppedMasks.from_crops: a crop of {tuple(crop.shape)} for a {h}x{w} region"
                )
            if h * w:
                pixels[start : start + h * w].view(h, w).copy_(crop)
            start += h * w
        return cls(pixels, regions, image_size)

    @staticmethod
    def cat(parts: Sequence[CroppedMasks]) -> CroppedMasks:
        """The instances of several ``parts`` of one image size, in order."""
        sizes = {p.image_size for p in parts}
        if len(sizes) != 1:
            raise ValueError(f"CroppedMasks.cat: the parts must share one image size, got {sorted(sizes)}")
        return CroppedMasks(
            torch.cat([p.pixels for p in parts]), torch.cat([p.regions for p in parts]), parts[0].image_size
        )

    # -- the tensor the masks stand for ----------------------------------------------------------------

    @property
    def shape(self) -> torch.Size:
        """``(N, H, W)`` of the full bitmaps."""
        return torch.Size((len(self), *self.image_size))

    @property
    def dtype(self) -> torch.dtype:
        return torch.uint8

    @property
    def device(self) -> torch.device:
        return self.pixels.device

    @property
    def nbytes(self) -> int:
        """Bytes held: the pixels and the region table."""
        return self.pixels.numel() + self.regions.numel() * self.regions.element_size()

    def __len__(self) -> int:
        return int(self.regions.shape[0])

    def __repr__(self) -> str:
        return f"CroppedMasks(n={len(self)}, image_size={self.image_size}, pixels={self.pixels.numel()})"

    def areas(self) -> Tensor:
        """``int64 [N]``: the area of each region (pixels stored, set or not)."""
        r = self.regions
        return (r[:, 2] - r[:, 0]) * (r[:, 3] - r[:, 1])

    def crops(self) -> list[Tensor]:
        """Each instance's region as a ``uint8 [h_i, w_i]`` view of :attr:`pixels`."""
        out, start = [], 0
        for x0, y0, x1, y1 in self.regions.tolist():
            h, w = y1 - y0, x1 - x0
            out.append(self.pixels[start : start + h * w].view(h, w))
            start += h * w
        return out

    def bitmap(self, index: int) -> Tensor:
        """``uint8 [H, W]``: instance ``index``'s full bitmap."""
        index = range(len(self))[index]
        x0, y0, x1, y1 = self.regions[index].tolist()
        start = int(self.areas()[:index].sum())
        out = torch.zeros(self.image_size, dtype=torch.uint8, device=self.device)
        out[y0:y1, x0:x1] = self.pixels[start : start + (y1 - y0) * (x1 - x0)].view(y1 - y0, x1 - x0)
        return out

    def to_bitmaps(self) -> Tensor:
        """``uint8 [N, H, W]``: the full bitmaps (for drawing, evaluation and code that needs whole images)."""
        out = torch.zeros(self.shape, dtype=torch.uint8, device=self.device)
        for i, (crop, (x0, y0, x1, y1)) in enumerate(zip(self.crops(), self.regions.tolist())):
            out[i, y0:y1, x0:x1] = crop
        return out

    def __iter__(self) -> Iterator[Tensor]:
        return (self.bitmap(i) for i in range(len(self)))

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, int):
            return self.bitmap(key)
        if isinstance(key, tuple):
            if not key or not isinstance(key[0], int):
                raise TypeError("CroppedMasks: index pixels as masks[i, ...] or through to_bitmaps()")
            return self.bitmap(key[0])[key[1:]]
        return self.select(key)

    def equal(self, other: CroppedMasks | Tensor) -> bool:
        """Whether ``other`` (masks or ``[N, H, W]`` bitmaps) holds the same masks, whatever its regions."""
        if isinstance(other, Tensor):
            other = CroppedMasks.from_bitmaps(other)
        if self.shape != other.shape:
            return False
        a, b = self.tighten(), other.tighten()
        return torch.equal(a.regions, b.regions) and torch.equal(a.pixels, b.pixels)

    # -- instances -------------------------------------------------------------------------------------

    def select(self, keep: Tensor | slice | Sequence[int] | Sequence[bool]) -> CroppedMasks:
        """The instances ``keep`` (``bool [N]``, indices or a slice), in its order."""
        order = torch.arange(len(self))[keep if not isinstance(keep, Tensor) else keep.cpu()].reshape(-1)
        crops = self.crops()
        chosen = [crops[i] for i in order.tolist()]
        return CroppedMasks.from_crops(chosen, self.regions[order.to(self.device)], self.image_size)

    def pixel_counts(self) -> Tensor:
        """``int64 [N]``: the number of set pixels of each instance."""
        return torch.tensor([int(c.sum()) for c in self.crops()], dtype=torch.int64)

    def tighten(self) -> CroppedMasks:
        """The same masks with each region shrunk to the tight box of its set pixels (empty when none)."""
        crops, regions = [], []
        for crop, (x0, y0, _, _) in zip(self.crops(), self.regions.tolist()):
            if crop.numel() == 0:
                crops.append(crop)
                regions.append([0, 0, 0, 0])
                continue
            cx0, cy0, cx1, cy1 = _extents(crop[None])[0].tolist()
            crops.append(crop[cy0:cy1, cx0:cx1])
            regions.append([x0 + cx0, y0 + cy0, x0 + cx1, y0 + cy1] if cx1 > cx0 else [0, 0, 0, 0])
        table = torch.tensor(regions, dtype=torch.int64).reshape(-1, 4)
        return CroppedMasks.from_crops(crops, table, self.image_size)

    def tight_boxes(self) -> Tensor:
        """``float32 [N, 4]``: the tight xyxy box of each instance's set pixels (pixel ``i`` spans
        ``[i, i + 1)``); zeros for an empty mask."""
        return self.tighten().regions.float()

    def union(self) -> Tensor:
        """``bool [H, W]``: the pixels set in any instance."""
        out = torch.zeros(self.image_size, dtype=torch.bool, device=self.device)
        for crop, (x0, y0, x1, y1) in zip(self.crops(), self.regions.tolist()):
            out[y0:y1, x0:x1] |= crop.bool()
        return out

    def erase(self, where: Tensor) -> CroppedMasks:
        """The masks with the pixels set in ``where`` (``bool [H, W]``) cleared; regions are kept."""
        crops = [c * ~where[y0:y1, x0:x1] for c, (x0, y0, x1, y1) in zip(self.crops(), self.regions.tolist())]
        return CroppedMasks.from_crops(crops, self.regions, self.image_size)

    # -- geometry ---------------------------------------------------------------------------------------

    def resize(self, size: tuple[int, int]) -> CroppedMasks:
        """Resized to ``size = (H', W')`` by torch's ``nearest-exact`` interpolation (pixel centres), as
        torchvision's ``resize(..., InterpolationMode.NEAREST_EXACT)`` of the full bitmaps."""
        (h, w), (nh, nw) = self.image_size, (int(size[0]), int(size[1]))
        sy, sx = _nearest_exact_source(h, nh), _nearest_exact_source(w, nw)
        r = self.regions.cpu()
        # the output rows taking an input row in [y0, y1): sy is non-decreasing, so a contiguous range
        ny = torch.searchsorted(sy, r[:, 1::2].contiguous())  # [N, 2] (ny0, ny1)
        nx = torch.searchsorted(sx, r[:, 0::2].contiguous())  # [N, 2] (nx0, nx1)
        crops = [
            crop.index_select(0, sy[a:b] - y0).index_select(1, sx[c:d] - x0)
            for crop, (x0, y0, _, _), (c, d), (a, b) in zip(
                self.crops(), r.tolist(), nx.tolist(), ny.tolist()
            )
        ]
        regions = torch.stack([nx[:, 0], ny[:, 0], nx[:, 1], ny[:, 1]], 1)
        return CroppedMasks.from_crops(crops, regions, (nh, nw))

    def hflip(self) -> CroppedMasks:
        """Mirrored left-right: ``x -> W - x``."""
        w = self.image_size[1]
        r = self.regions
        regions = torch.stack([w - r[:, 2], r[:, 1], w - r[:, 0], r[:, 3]], 1)
        return CroppedMasks.from_crops([c.flip(1) for c in self.crops()], regions, self.image_size)

    def translate(self, offset: Sequence[int], size: tuple[int, int]) -> CroppedMasks:
        """Moved by the integer ``offset = (dx, dy)`` onto an image of ``size = (H', W')``; what falls off
        it is cut (a crop, a pad, or both)."""
        dx, dy = int(offset[0]), int(offset[1])
        h, w = int(size[0]), int(size[1])
        moved = self.regions + torch.tensor([dx, dy, dx, dy], device=self.regions.device)
        lo = torch.tensor([0, 0, 0, 0], device=moved.device)
        hi = torch.tensor([w, h, w, h], device=moved.device)
        regions = torch.minimum(torch.maximum(moved, lo), hi)
        crops = [
            crop[ny0 - my0 : ny1 - my0, nx0 - mx0 : nx1 - mx0]
            for crop, (mx0, my0, _, _), (nx0, ny0, nx1, ny1) in zip(
                self.crops(), moved.tolist(), regions.tolist()
            )
        ]
        return CroppedMasks.from_crops(crops, regions, (h, w))

    def warp_affine(self, matrix: np.ndarray | Tensor, size: tuple[int, int]) -> CroppedMasks:
        """Warped by the ``[3, 3]`` affine ``matrix`` (input to output, continuous pixel coordinates: pixel
        ``i`` spans ``[i, i + 1)``) onto an image of ``size = (H', W')``, by nearest neighbour.

        Output pixel ``(x, y)`` takes input pixel ``floor(inverse(matrix) @ (x + 0.5, y + 0.5))`` (0 off the
        image): OpenCV's ``INTER_NEAREST`` rule, computed in ``float64`` rather than OpenCV's 1/1024-pixel
        fixed point, from absolute coordinates, so a window of the output gets exactly the values the whole
        output has there.
        """
        m = torch.as_tensor(np.asarray(matrix), dtype=torch.float64)
        inv = torch.linalg.inv(m)
        h, w = int(size[0]), int(size[1])
        crops, regions = [], []
        for crop, region in zip(self.crops(), self.regions.tolist()):
            window = _warped_window(m, region, (h, w))
            if window is None:
                crops.append(crop.new_zeros((0, 0)))
                regions.append([0, 0, 0, 0])
                continue
            crops.append(_warp_crop(crop, region, inv, window))
            regions.append(list(window))
        table = torch.tensor(regions, dtype=torch.int64).reshape(-1, 4)
        return CroppedMasks.from_crops(crops, table, (h, w))

    # -- devices ----------------------------------------------------------------------------------------

    def to(self, device: torch.device | str, non_blocking: bool = False) -> CroppedMasks:
        return CroppedMasks(
            self.pixels.to(device, non_blocking=non_blocking),
            self.regions.to(device, non_blocking=non_blocking),
            self.image_size,
        )

    def pin_memory(self) -> CroppedMasks:
        return CroppedMasks(self.pixels.pin_memory(), self.regions.pin_memory(), self.image_size)

    def windows(self, index: Tensor) -> tuple[Tensor, Tensor]:
        """The instances ``index`` on windows of one size: ``uint8 [U, h, w]`` and each window's top-left
        corner ``int64 [U, 2]`` ``(x, y)`` in the image (all on the masks' device, no loop).

        Each window lies inside the image, holds its instance's region with one more pixel around it where
        the image has one, and reads as the full bitmap there. So RoIAlign of the windows (with boxes moved
        by the corners) samples the values it samples from the full bitmaps: beyond a window's edge inside
        the image there are zeros either way, and at the image's edge both clamp alike.
        """
        (h_img, w_img), r = self.image_size, self.regions[index]
        rw, rh = r[:, 2] - r[:, 0], r[:, 3] - r[:, 1]
        h = min(h_img, int(rh.max()) + 2) if len(r) else 1
        w = min(w_img, int(rw.max()) + 2) if len(r) else 1
        oy = (r[:, 1] - 1).clamp(min=0).clamp(max=h_img - h)
        ox = (r[:, 0] - 1).clamp(min=0).clamp(max=w_img - w)
        ry = oy[:, None] + torch.arange(h, device=r.device) - r[:, 1:2]  # [U, h] row in the region
        rx = ox[:, None] + torch.arange(w, device=r.device) - r[:, 0:1]  # [U, w] column in the region
        inside = ((ry >= 0) & (ry < rh[:, None]))[:, :, None] & ((rx >= 0) & (rx < rw[:, None]))[:, None, :]
        starts = (torch.cumsum(self.areas(), 0) - self.areas())[index]
        flat = (
            starts[:, None, None]
            + ry.clamp(min=0)[:, :, None] * rw[:, None, None]
            + rx.clamp(min=0)[:, None, :]
        )
        if self.pixels.numel() == 0:
            values = torch.zeros(flat.shape, dtype=torch.uint8, device=r.device)
        else:
            values = self.pixels[flat.clamp(max=self.pixels.numel() - 1)]
        return values * inside, torch.stack([ox, oy], 1)


def _warped_window(
    matrix: Tensor, region: Sequence[int], size: tuple[int, int]
) -> tuple[int, int, int, int] | None:
    """The output pixels an input ``region`` can reach under ``matrix``: the box of its warped corners,
    one pixel wider each side (float rounding), cut to ``size = (H, W)``; None when nothing is left."""
    x0, y0, x1, y1 = region
    if x1 <= x0 or y1 <= y0:
        return None
    corners = torch.tensor([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], dtype=torch.float64)
    warped = corners @ matrix[:2, :2].T + matrix[:2, 2]
    lo, hi = warped.amin(0).floor() - 1, warped.amax(0).ceil() + 1
    h, w = size
    wx0, wy0 = max(int(lo[0]), 0), max(int(lo[1]), 0)
    wx1, wy1 = min(int(hi[0]), w), min(int(hi[1]), h)
    return (wx0, wy0, wx1, wy1) if wx1 > wx0 and wy1 > wy0 else None


def _warp_crop(crop: Tensor, region: Sequence[int], inverse: Tensor, window: Sequence[int]) -> Tensor:
    """Nearest-neighbour samples of ``crop`` (at ``region``) over the output ``window`` (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = region
    cx = torch.arange(window[0], window[2], dtype=torch.float64)[None, :] + 0.5  # [1, w] pixel centres
    cy = torch.arange(window[1], window[3], dtype=torch.float64)[:, None] + 0.5  # [h, 1]
    sx = (inverse[0, 0] * cx + (inverse[0, 1] * cy + inverse[0, 2])).floor().long()  # [h, w]
    sy = (inverse[1, 0] * cx + (inverse[1, 1] * cy + inverse[1, 2])).floor().long()
    valid = (sx >= x0) & (sx < x1) & (sy >= y0) & (sy < y1)
    values = crop[(sy - y0).clamp(0, y1 - y0 - 1), (sx - x0).clamp(0, x1 - x0 - 1)]
    return values * valid

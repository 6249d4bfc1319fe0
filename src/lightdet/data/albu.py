"""Any albumentations transform, named in a config, on a ``DetSample``.

albumentations stays the catalogue for photometric and most geometric augmentations; this adapter
converts the sample to numpy, runs an ``albumentations.Compose`` with ``pascal_voc`` (xyxy pixel)
boxes, and keeps labels, ignore flags and masks of the boxes that survive (a crop may drop some).
Masks go through albumentations as full bitmaps only when some transform moves pixels; a list of
pixel-value transforms leaves them as they are.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from lightdet.structures import CroppedMasks, DetSample, clip_boxes

__all__ = ["Albu", "build_albumentation"]


def _plain(value: Any) -> Any:
    """Config containers (OmegaConf's included) -> dicts and lists, recursively."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [_plain(v) for v in value]
    return value


def _catalogue(A: Any) -> list[str]:
    bases = (A.BasicTransform, A.BaseCompose)
    return sorted(n for n in dir(A) if isinstance(getattr(A, n), type) and issubclass(getattr(A, n), bases))


def build_albumentation(spec: Mapping[str, Any]) -> Any:
    """Builds one albumentations transform from ``{"type": NAME, **kwargs}``.

    Compositions (``OneOf``, ``SomeOf``, ``Sequential``) take a nested ``transforms`` list of specs.

    Raises:
        ValueError: for a missing ``type`` or a name that albumentations does not have (with the
            closest names it has).
    """
    import albumentations as A  # ~1 s (albumentations + OpenCV); paid only by pipelines that use Albu

    kwargs = _plain(spec)
    name = kwargs.pop("type", None)
    if not isinstance(name, str):
        raise ValueError(f"Albu: each transform needs a `type` naming an albumentations class, got {kwargs}")
    if name not in _catalogue(A):
        close = difflib.get_close_matches(name, _catalogue(A), n=3, cutoff=0.5)
        hint = f"; did you mean {close}?" if close else ""
        raise ValueError(f"Albu: albumentations has no transform {name!r}{hint}")
    if "transforms" in kwargs:
        kwargs["transforms"] = [build_albumentation(t) for t in kwargs["transforms"]]
    return getattr(A, name)(**kwargs)


def _moves_pixels(transform: Any) -> bool:
    """Whether an albumentations transform (or composition) may change masks: anything but pixel-value
    (``ImageOnlyTransform``) transforms."""
    import albumentations as A

    if isinstance(transform, A.BaseCompose):
        return any(_moves_pixels(t) for t in transform.transforms)
    return not isinstance(transform, A.ImageOnlyTransform)


class Albu:
    """Runs albumentations transforms given by name, keeping boxes, labels, ignore and masks in sync.

    Args:
        transforms: ``[{"type": "RandomBrightnessContrast", "p": 0.2}, ...]``; the keys besides
            ``type`` are the transform's arguments.
        min_visibility: a box keeping less than this fraction of its area (after a crop) is dropped.
        min_area: a box smaller than this many pixels after the transforms is dropped.

    Boxes that are dropped take their label, ignore flag and mask with them; degenerate boxes
    (zero width or height) are dropped before the transforms. ``meta.img_size`` follows the image;
    ``meta.scale_factor`` and ``meta.flip`` are left as they are, so use :class:`Resize` and
    :class:`RandomFlip` for resizing and flipping in pipelines whose predictions are mapped back.

    The random state is reseeded from ``torch.initial_seed()`` whenever that changes, so DataLoader
    workers and epochs (with non-persistent workers) draw different augmentations.
    """

    def __init__(
        self, transforms: Sequence[Mapping[str, Any]], *, min_visibility: float = 0.0, min_area: float = 0.0
    ) -> None:
        import albumentations as A

        self.specs = [_plain(t) for t in transforms]
        bbox_params = A.BboxParams(
            format="pascal_voc",
            label_fields=["box_index"],
            min_visibility=min_visibility,
            min_area=min_area,
            clip=True,
        )
        with warnings.catch_warnings():  # photometric-only lists: boxes pass through unchanged
            warnings.filterwarnings("ignore", message="Got processor for bboxes, but no transform")
            self._compose = A.Compose([build_albumentation(s) for s in self.specs], bbox_params=bbox_params)
        self._moves_masks = _moves_pixels(self._compose)
        self._seed: int | None = None

    def _reseed(self) -> None:
        seed = torch.initial_seed()
        if seed != self._seed:
            self._compose.set_random_seed(seed % 2**32)
            self._seed = seed

    def __call__(self, sample: DetSample) -> DetSample:
        self._reseed()
        boxes = sample.boxes
        index = torch.nonzero((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).flatten()
        data: dict[str, Any] = {
            "image": np.ascontiguousarray(sample.image.permute(1, 2, 0).numpy()),  # [H, W, 3]
            "bboxes": boxes[index].numpy(),  # [M, 4] xyxy
            "box_index": index.numpy(),  # [M] row of each box in the sample
        }
        with_masks = sample.masks is not None and len(sample.masks) > 0 and self._moves_masks
        if with_masks:
            data["masks"] = sample.masks.to_bitmaps().numpy()  # type: ignore[union-attr]
        return self._to_sample(sample, self._compose(**data), with_masks)

    def _to_sample(self, sample: DetSample, out: dict[str, Any], with_masks: bool) -> DetSample:
        """Builds the output sample from albumentations' result, keeping the surviving boxes' rows."""
        pixels = np.asarray(out["image"])
        if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
            got = f"{pixels.shape} {pixels.dtype}"
            what = f"Albu {self.specs}: the transforms"
            raise ValueError(f"{what} must return a uint8 [H, W, 3] image, not {got}")
        image = torch.from_numpy(np.require(pixels, requirements=["C", "W"])).permute(2, 0, 1)
        hw = (int(image.shape[1]), int(image.shape[2]))
        boxes = clip_boxes(torch.from_numpy(np.asarray(out["bboxes"], dtype=np.float32).reshape(-1, 4)), hw)
        keep = torch.from_numpy(np.asarray(out["box_index"], dtype=np.int64).reshape(-1))
        ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, keep = boxes[ok], keep[ok]
        masks = sample.masks
        if with_masks:
            bitmaps = np.require(np.asarray(out["masks"]), requirements=["C", "W"])
            masks = CroppedMasks.from_bitmaps(torch.from_numpy(bitmaps))[keep]
        elif masks is not None:  # no instance, or pixel-value transforms only (the image keeps its size)
            masks = masks[keep] if len(masks) else CroppedMasks.empty(hw)
        return replace(
            sample,
            image=image.contiguous(),
            boxes=boxes,
            labels=sample.labels[keep],
            ignore=sample.ignore[keep],  # type: ignore[index]
            masks=masks,
            meta=replace(sample.meta, img_size=hw),
        )

    def __repr__(self) -> str:
        return f"Albu({self.specs})"

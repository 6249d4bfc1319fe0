"""Inference on your own images: a trained checkpoint in, :class:`~lightdet.structures.Detections` out.

``Predictor.from_checkpoint(path)`` rebuilds the model and the dataset's *test* pipeline from the config the
checkpoint carries, so an image is resized exactly as ``lightdet-test`` resized it, and the detections come
back in the image's own pixels::

    det = lightdet.Predictor.from_checkpoint("outputs/run/checkpoints/last.ckpt")
    detections = det.predict("street.jpg")            # one image -> Detections
    batch = det.predict(["a.jpg", array, pil_image])  # a list -> list[Detections]
    det.show("street.jpg")                            # a PIL image with the boxes drawn

``Predictor.from_export("model.onnx")`` (or ``from_checkpoint`` given such a file) runs a file written by
``lightdet-export`` the same way, with ONNX Runtime or PyTorch instead of the eager model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from lightdet.data.transforms import Compose, LoadImage, Resize, read_image
from lightdet.structures import DetBatch, Detections, DetSample, ImageMeta

if TYPE_CHECKING:
    from omegaconf import DictConfig

__all__ = ["Predictor", "ImageInput", "to_image_tensor", "draw_detections", "pipeline_transforms"]

ImageInput = str | PathLike | np.ndarray | Image.Image | Tensor
"""One image: a file path, an ``[H, W, 3]`` (or ``[H, W]``) array, a PIL image, or a ``[3, H, W]`` tensor.
Arrays and tensors are RGB, ``uint8`` or float in ``[0, 1]``."""


def _from_float(x: Tensor, what: str) -> Tensor:
    if x.is_floating_point():
        if x.numel() and (float(x.min()) < 0 or float(x.max()) > 1):
            raise ValueError(f"{what}: a float image must lie in [0, 1] (torchvision's convention)")
        return (x * 255).round().to(torch.uint8)
    if x.dtype != torch.uint8:
        raise ValueError(f"{what}: expected uint8 or float pixels, got {x.dtype}")
    return x


def to_image_tensor(image: ImageInput) -> tuple[Tensor, str]:
    """One :data:`ImageInput` -> ``(uint8 [3, H, W] RGB, file name or a description)``."""
    if isinstance(image, (str, PathLike)):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such image file")
        return read_image(path), str(path)
    if isinstance(image, Image.Image):
        return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).contiguous(), "<PIL image>"
    if isinstance(image, np.ndarray):
        array = image[..., None].repeat(3, axis=-1) if image.ndim == 2 else image
        if array.ndim != 3 or array.shape[-1] != 3:
            raise ValueError(f"numpy image: expected [H, W, 3] RGB or [H, W], got shape {image.shape}")
        tensor = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).contiguous()
        return _from_float(tensor, "numpy image"), "<array>"
    if isinstance(image, Tensor):
        if image.dim() != 3 or image.shape[0] != 3:
            raise ValueError(f"tensor image: expected [3, H, W] RGB, got shape {tuple(image.shape)}")
        return _from_float(image.detach().cpu(), "tensor image").contiguous(), "<tensor>"
    raise TypeError(f"cannot read an image from a {type(image).__name__} (path, numpy array, PIL image or tensor)")


def _as_list(images: ImageInput | Sequence[ImageInput]) -> tuple[list[ImageInput], bool]:
    """The images as a list, and whether a single one was given."""
    if isinstance(images, Tensor) and images.dim() == 4:
        return list(images), False
    if isinstance(images, (list, tuple)):
        return list(images), False
    return [images], True  # type: ignore[list-item]


def pipeline_transforms(cfg: DictConfig, source: str | PathLike) -> Compose:
    """The test pipeline of a stored config after its ``LoadImage`` step (images arrive decoded)."""
    from hydra.utils import instantiate

    steps = list(instantiate(cfg.dataset.pipeline.test, _convert_="all"))
    if not steps or not isinstance(steps[0], LoadImage):
        raise ValueError(f"{source}: the stored test pipeline must start with LoadImage, got {steps[:1]}")
    return Compose(steps[1:])


class Predictor:
    """Images in (paths, arrays, PIL images, tensors), detections out: a trained model with its test pipeline.

    Args:
        model: a detector with ``predict(DetBatch) -> list[Detections]`` (e.g. ``TwoStageDetector``).
        transforms: the test pipeline after image loading: ``DetSample -> DetSample`` steps (resizing ...).
        class_names: the name of each label ``0..K-1``.
        device: where the model runs.
    """

    def __init__(
        self,
        model: nn.Module,
        transforms: Callable[[DetSample], DetSample],
        class_names: Sequence[str],
        *,
        device: torch.device | str = "cpu",
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.transforms = transforms
        self.class_names = list(class_names)

    @classmethod
    def from_checkpoint(
        cls, path: str | PathLike, *, device: torch.device | str | None = None, optimize: bool = True
    ) -> Predictor:
        """Builds the model, the test pipeline and the class names from a lightdet checkpoint.

        Args:
            path: a checkpoint written by ``lightdet-train`` or ``lightdet-convert`` (it carries its config),
                or a file written by ``lightdet-export`` (see :meth:`from_export`).
            device: None: CUDA when available, else the CPU.
            optimize: rewrite the model for inference (:func:`~lightdet.models.optimize_for_inference`:
                BatchNorm folded into the convs, channels-last weights; the same detections, faster). False
                keeps ``predictor.model`` as trained (its state dict matches the checkpoint's).
        """
        from hydra.utils import instantiate

        from lightdet.api import detector_state, stored_config
        from lightdet.checkpoint.files import check_fits, read_checkpoint
        from lightdet.data.classes import load_class_names
        from lightdet.export.metadata import exported_format
        from lightdet.models.folding import optimize_for_inference

        if exported_format(path) is not None:
            return cls.from_export(path, device=device)
        cfg = stored_config(path)
        if cfg.model.get("backbone") is not None and cfg.model.backbone.get("weights") is not None:
            cfg.model.backbone.weights = None  # initial weights: the checkpoint's replace them
        model = instantiate(cfg.model, _convert_="all")
        payload = read_checkpoint(path, role="ckpt")
        state = detector_state(payload)
        check_fits(state, model, path=path, stored=cfg.model, wanted=cfg.model)
        model.load_state_dict(state)
        if optimize:
            optimize_for_inference(model)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(model, pipeline_transforms(cfg, path), load_class_names(cfg.dataset.classes), device=device)

    @classmethod
    def from_export(cls, path: str | PathLike, *, device: torch.device | str | None = None) -> Predictor:
        """Runs a file written by ``lightdet-export`` (ONNX with ONNX Runtime; TorchScript / ExportedProgram
        with PyTorch), with the test pipeline of the config it carries (the ``Resize`` it records otherwise).

        Args:
            path: an ``.onnx``, ``.torchscript`` or ``.pt2`` file written by ``lightdet-export``.
            device: ``cuda`` uses ONNX Runtime's CUDA provider when installed; PyTorch formats run where they
                were exported. None: the CPU.
        """
        from lightdet.export.runtime import load_export

        runner = load_export(path, device=str(device or "cpu"))
        metadata = runner.metadata
        if metadata.config is not None:
            transforms = pipeline_transforms(runner.stored_config(), path)
        else:
            resize = metadata.input_size.get("resize")
            transforms = Compose([Resize(**resize)] if resize else [])
        return cls(runner.as_detector(), transforms, metadata.class_names, device="cpu")

    def _sample(self, image: ImageInput, index: int) -> DetSample:
        pixels, name = to_image_tensor(image)
        hw = (int(pixels.shape[1]), int(pixels.shape[2]))
        sample = DetSample(
            image=pixels,
            boxes=torch.zeros((0, 4), dtype=torch.float32),
            labels=torch.zeros((0,), dtype=torch.int64),
            meta=ImageMeta(image_id=index, file_name=name, ori_size=hw, img_size=hw),
        )
        return self.transforms(sample)

    @torch.inference_mode()
    def predict(
        self,
        images: ImageInput | Sequence[ImageInput],
        *,
        score_thr: float = 0.0,
        batch_size: int = 1,
        slice: int | None = None,  # noqa: A002 (the documented keyword)
        overlap: float = 0.2,
    ) -> Detections | list[Detections]:
        """Detects objects in one image (returns :class:`Detections`) or a list (returns a list).

        Args:
            images: see :data:`ImageInput`; a ``[B, 3, H, W]`` tensor counts as a list.
            score_thr: drop detections scoring below it (the model's own ``score_thr`` applies first).
            batch_size: images (or tiles) per forward pass. Images of a batch are padded to its largest one,
                which changes the features near the padded borders slightly; 1 gives each image's exact result.
            slice: sliced inference for large images with small objects: tiles of ``slice x slice`` pixels
                of the input image, each resized by the test pipeline, plus the whole image, merged by NMS
                (:func:`lightdet.slicing.predict_sliced`). None: the whole image only.
            overlap: the share of a tile that its neighbour covers too (with ``slice``).

        Returns:
            boxes ``float32 [N, 4]`` xyxy in the input image's pixels, ``scores [N]``, ``labels [N]``
            (``class_names[label]``), on the CPU.
        """
        if batch_size < 1:
            raise ValueError(f"predict: batch_size must be >= 1, got {batch_size}")
        items, single = _as_list(images)
        if slice is None:
            out = self._predict_all(items, batch_size)
        else:
            from lightdet.slicing import predict_sliced

            def tiles(crops: list[Tensor]) -> list[Detections]:
                return self._predict_all(crops, batch_size)

            out = [predict_sliced(tiles, to_image_tensor(img)[0], slice, overlap=overlap) for img in items]
        out = [det[det.scores >= score_thr] for det in out]
        return out[0] if single else out

    def _predict_all(self, items: Sequence[ImageInput], batch_size: int) -> list[Detections]:
        """Every image's detections (CPU), ``batch_size`` images per forward pass."""
        out: list[Detections] = []
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            batch = DetBatch.collate([self._sample(img, start + i) for i, img in enumerate(chunk)])
            out += [det.to("cpu") for det in self.model.predict(batch.to(self.device))]
        return out

    def with_tta(
        self, scales: Sequence[float] = (1.0,), flip: bool = True, *, merge: str = "nms", iou_thr: float = 0.5
    ) -> Predictor:
        """This predictor with test-time augmentation (:class:`~lightdet.models.tta.TestTimeAugmentation`):
        every image is also predicted at ``scales`` times the test size and mirrored, and merged by ``merge``
        (``"nms"`` or ``"wbf"``). The model's weights are shared, not copied."""
        from lightdet.models.tta import TestTimeAugmentation

        model = TestTimeAugmentation(self.model, scales, flip, merge=merge, iou_thr=iou_thr)  # type: ignore[arg-type]
        return type(self)(model, self.transforms, self.class_names, device=self.device)

    def show(
        self, image: ImageInput, detections: Detections | None = None, *, score_thr: float = 0.3
    ) -> Image.Image:
        """The image with its detections (``predict``'s when not given) drawn: boxes, names and scores."""
        pixels, _ = to_image_tensor(image)
        if detections is None:
            detections = self.predict(image)  # type: ignore[assignment]
        assert isinstance(detections, Detections)
        return draw_detections(pixels, detections, self.class_names, score_thr=score_thr)


def draw_detections(
    image: Tensor, detections: Detections, class_names: Sequence[str], *, score_thr: float = 0.3
) -> Image.Image:
    """``uint8 [3, H, W]`` + detections scoring at least ``score_thr`` -> a PIL image with labelled boxes."""
    from torchvision.utils import draw_bounding_boxes

    keep = detections[detections.scores >= score_thr]
    if len(keep) == 0:
        return Image.fromarray(image.permute(1, 2, 0).numpy())
    labels = [f"{class_names[int(c)]} {float(s):.2f}" for c, s in zip(keep.labels, keep.scores)]
    palette = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45"]
    colors = [palette[int(c) % len(palette)] for c in keep.labels]
    width = max(1, round(max(image.shape[1:]) / 200))
    drawn = draw_bounding_boxes(image, keep.boxes, labels=labels, colors=colors, width=width)
    return Image.fromarray(drawn.permute(1, 2, 0).numpy())

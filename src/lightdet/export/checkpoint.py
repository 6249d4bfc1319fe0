"""Exporting a lightdet checkpoint: its model, its test pipeline's size policy and config in the metadata,
and a parity check of the written file against the eager model on seeded images."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from omegaconf import OmegaConf

from lightdet.export.metadata import ExportMetadata
from lightdet.export.parity import ParityReport, assert_parity
from lightdet.export.writers import ExportOptions, export_detector

if TYPE_CHECKING:
    from lightdet.inference import Predictor


def input_size_policy(transforms: Any) -> dict[str, Any]:
    """``{"resize": {"scale": [w, h], "keep_ratio": bool, "downscale_only": bool} | None, "pipeline": [step,
    ...]}`` of a test pipeline (a :class:`~lightdet.data.transforms.Compose` after ``LoadImage``)."""
    from lightdet.data.transforms import Resize

    steps = list(transforms.transforms)
    resizes = [s for s in steps if isinstance(s, Resize)]
    resize = None
    if len(resizes) == 1 and len(resizes[0].scales) == 1:
        step = resizes[0]
        resize = {
            "scale": list(step.scales[0]),
            "keep_ratio": step.keep_ratio,
            "downscale_only": step.downscale_only,
        }
    return {"resize": resize, "pipeline": [repr(s) for s in steps]}


def static_size(policy: dict[str, Any]) -> tuple[int, int] | None:
    """The one ``(height, width)`` every image has after the pipeline, if it resizes to a fixed size."""
    resize = policy["resize"]
    if resize is None or resize["keep_ratio"]:
        return None
    width, height = resize["scale"]
    return int(height), int(width)


def resolve_options(options: ExportOptions, dynamic: bool | None, policy: dict[str, Any]) -> ExportOptions:
    """``dynamic=None`` (the default) becomes static when the pipeline fixes the image size, else dynamic."""
    fixed = static_size(policy)
    if dynamic is None:
        dynamic = fixed is None
    size = options.size or (None if dynamic else fixed)
    return replace(options, dynamic=dynamic, size=size)


def export_checkpoint(
    ckpt: str | Path, out: str | Path, options: ExportOptions, *, dynamic: bool | None = None
) -> tuple[ExportMetadata, Predictor]:
    """Exports the model of a lightdet checkpoint with its class names, size policy and config.

    Args:
        dynamic: overrides ``options.dynamic``; None: static exactly when the test pipeline resizes to one size.

    Returns:
        the written metadata and the eager :class:`~lightdet.inference.Predictor` (for :func:`check_export`).
    """
    from lightdet.api import stored_config
    from lightdet.inference import Predictor

    eager = Predictor.from_checkpoint(ckpt, device="cpu", optimize=False)  # the model as trained
    policy = input_size_policy(eager.transforms)
    options = resolve_options(options, dynamic, policy)
    config = OmegaConf.to_container(stored_config(ckpt), resolve=False)
    metadata = export_detector(
        eager.model,
        out,
        options,
        class_names=eager.class_names,
        input_size=policy,
        config=config,  # type: ignore[arg-type]
    )
    return metadata, eager


def check_images(metadata: ExportMetadata, seed: int = 0) -> list[np.ndarray]:
    """Seeded ``[H, W, 3]`` RGB noise: the export's size, and for a dynamic export a second, different one."""
    rng = np.random.default_rng(seed)
    h, w = metadata.input_size["example_size"]
    sizes: Sequence[tuple[int, int]] = [(h, w)]
    if metadata.input_size["dynamic"]:
        sizes = [(h, w), (h * 3 // 4, w * 5 // 4)]
    return [rng.integers(0, 256, (hh, ww, 3), dtype=np.uint8) for hh, ww in sizes]


def check_export(path: str | Path, eager: Predictor, metadata: ExportMetadata) -> ParityReport:
    """Runs the written file and the eager model on :func:`check_images` through the same pipeline.

    float16 exports are held to float16's precision (boxes within 1 px, scores within 5e-3, 90% matched).

    Raises:
        ParityError: with the worst box and score differences.
    """
    from lightdet.inference import Predictor

    exported = Predictor.from_export(path)
    images = check_images(metadata)
    if metadata.input_size["batch"] > 1:
        images = [images[0]] * metadata.input_size["batch"]
    batch = metadata.input_size["batch"]
    reference = eager.predict(images, batch_size=batch)
    candidate = exported.predict(images, batch_size=batch)
    tolerances = {"box_tol": 1.0, "score_tol": 5e-3, "min_matched": 0.9} if metadata.half else {}
    return assert_parity(reference, candidate, what=Path(path).name, **tolerances)  # type: ignore[arg-type]

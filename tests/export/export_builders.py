"""The export tests' models and helpers: the model tests' tiny seeded detectors, one per family, their images,
export and checkpoint writers. (A module of its own rather than ``conftest``: ``from conftest import`` resolves to
whichever test folder's conftest was imported first when several folders run in one process.)"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "models" / "rtmdet"))

from detr_builders import build_tiny_dfine, build_tiny_rtdetr, build_tiny_rtdetrv2  # noqa: E402
from mask_model_builders import build_tiny_cascade, build_tiny_mask_rcnn  # noqa: E402
from model_builders import build_tiny_detector, make_sample  # noqa: E402
from one_stage_builders import build_tiny_fcos, build_tiny_retinanet  # noqa: E402
from rtmdet_builders import build_tiny_rtmdet  # noqa: E402

from lightdet.export import ExportOptions, export_detector  # noqa: E402
from lightdet.structures import DetBatch  # noqa: E402

FAMILIES: dict[str, Callable[[], nn.Module]] = {
    "faster_rcnn": build_tiny_detector,
    "mask_rcnn": build_tiny_mask_rcnn,
    "cascade_mask_rcnn": build_tiny_cascade,
    "retinanet": build_tiny_retinanet,
    "fcos": build_tiny_fcos,
    "rtmdet": lambda: tiny_rtmdet(),
}
#: The real-time DETRs, exported through SupportsExport (test_detr_export.py): the top 60 of 50 queries x 3
#: classes per image, no NMS.
DETRS: dict[str, Callable[[], nn.Module]] = {
    "rtdetr": build_tiny_rtdetr,
    "rtdetrv2": build_tiny_rtdetrv2,
    "dfine": build_tiny_dfine,
}


def tiny_rtmdet() -> nn.Module:
    """The tiny RTMDet with its BatchNorm statistics taken from one batch: at its initialisation the features
    fade to ~0 through the CSP stages, every class score is the prior (ties everywhere) and every box a point
    (the head drops empty boxes): nothing to compare."""
    model = build_tiny_rtmdet(exp_on_reg=True, max_per_img=100).train()
    for norm in model.modules():
        if isinstance(norm, nn.BatchNorm2d):
            norm.momentum = 1.0
    with torch.no_grad():
        model.bbox_head(model.extract_feat(model.preprocess(image_batches()[0])[0]))
        for conv in model.bbox_head.rtm_cls:  # spread the scores out of sigmoid's saturation (no ties at 1)
            conv.weight.mul_(0.1)
    return model


SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript", "exported_program": ".pt2"}
CLASSES = ["circle", "square", "star"]
#: Two sizes through one dynamic-shape file (every pyramid level of stride <= 64 at least 2 x 2).
SIZES = ((96, 128), (128, 96))


def seeded_model(family: str) -> nn.Module:
    """The family's tiny detector with seed-0 weights, in eval mode (score threshold 0: ~100 boxes per image)."""
    torch.manual_seed(0)
    return {**FAMILIES, **DETRS}[family]().eval()


def image_batches(sizes=SIZES) -> list[DetBatch]:
    """One single-image batch per size (random pixels, seeded)."""
    return [DetBatch.collate([make_sample(h, w, seed=10 + i)]) for i, (h, w) in enumerate(sizes)]


def export_model(model: nn.Module, folder: Path, fmt: str, **options) -> Path:
    """Writes ``model`` in ``fmt`` (dynamic sizes unless told otherwise) and returns the file."""
    path = folder / f"model{SUFFIX[fmt]}"
    export_detector(model, path, ExportOptions(format=fmt, **options), class_names=CLASSES)
    return path


def write_checkpoint(model: nn.Module, cfg, path: Path) -> Path:
    """``model``'s weights and the composed ``cfg`` as a lightdet checkpoint at ``path``."""
    import lightning as L
    from omegaconf import OmegaConf

    from lightdet.engine.module import CONFIG_KEY

    payload = {
        "state_dict": {f"detector.{k}": v for k, v in model.state_dict().items()},
        CONFIG_KEY: OmegaConf.to_container(cfg, resolve=False),
        "pytorch-lightning_version": L.__version__,
        "epoch": 0,
        "global_step": 0,
    }
    torch.save(payload, path)
    return path

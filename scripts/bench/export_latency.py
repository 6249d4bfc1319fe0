"""Eager PyTorch vs ONNX Runtime vs TorchScript: the same detector, weights and image, side by side on this CPU.

For each model config, builds the detector with seeded random weights (class 0 made likely, so that a trained
model's load reaches NMS and the mask heads, see ``make_class_zero_likely``; the NMS-free real-time DETRs
return their top 300 whatever the weights), exports it with ``lightdet.export`` (BatchNorm folded, dynamic
sizes), and times ``predict`` of one image in the three runtimes, alternating between them, after a warm-up.
Each model runs at its recipes' test size (the R-CNNs, RetinaNet and FCOS at 800x1216, the DETRs at 640x640)
unless ``--size`` sets one for all. Prints the median latency of each and the ratio to eager
(below 1 means faster than eager): "eager" is the model as built, "eager opt" the same model after
:func:`lightdet.models.optimize_for_inference` (BatchNorm folded, channels-last weights), which is what
``Predictor`` and ``lightdet-test`` run; the last column compares ONNX Runtime with it. ONNX Runtime gets as many intra-op threads as PyTorch. On a machine shared
with other work, run with ``OMP_WAIT_POLICY=PASSIVE``: PyTorch's OpenMP threads and ONNX Runtime's (then told
not to spin either) sleep instead of spinning while they wait, which otherwise starves whichever runs next.

    python scripts/bench/export_latency.py                                   # R50 models and the DETRs
    python scripts/bench/export_latency.py --size 512 768 --repeats 3 --models faster_rcnn fcos
    python scripts/bench/export_latency.py --models rtdetr_r50vd dfine_l --repeats 3

A model without an export graph is listed with the reason and skipped.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from hydra.utils import instantiate
from torch import nn

from lightdet.benchmark import StealMeter, steal_note
from lightdet.composition import compose_config
from lightdet.export import ExportError, ExportOptions, export_detector, load_export
from lightdet.models import BBoxHead, FCOSHead, RetinaHead, optimize_for_inference
from lightdet.structures import DetBatch, DetSample, ImageMeta

R50_MODELS = ("faster_rcnn", "mask_rcnn", "cascade_rcnn", "cascade_mask_rcnn", "retinanet", "fcos")
#: RT-DETR R50-vd and D-FINE-L (of comparable size), timed at their 640x640 test size.
DETR_MODELS = ("rtdetr_r50vd", "dfine_l")
DETR_PREFIXES = ("rtdetr", "dfine")


def default_size(name: str) -> tuple[int, int]:
    """The test size of the model's recipes: 640x640 for the real-time DETRs, else 800x1216 (1333x800)."""
    return (640, 640) if name.startswith(DETR_PREFIXES) else (800, 1216)


def make_class_zero_likely(model: nn.Module) -> None:
    """Raises class 0's logit so that a random model sends a trained model's load through post-processing:
    about a thousand candidates per image pass the score threshold into NMS and ``max_per_img`` detections
    reach the mask heads (with random weights, nothing would pass 0.05)."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, BBoxHead):
                module.fc_cls.bias[0] += 4.0
            elif isinstance(module, RetinaHead):
                module.retina_cls.bias[:: module.num_classes] = 0.0
            elif isinstance(module, FCOSHead):
                module.conv_cls.bias[0] = 0.0


def build(name: str, num_classes: int = 80) -> nn.Module:
    """The packaged model config ``name`` with seeded weights and class 0 likely, in eval mode."""
    cfg = compose_config(None, [f"+model={name}", f"+dataset.num_classes={num_classes}"])
    torch.manual_seed(0)
    model = instantiate(cfg.model, _convert_="all").eval()
    make_class_zero_likely(model)
    return model


def image_batch(h: int, w: int) -> DetBatch:
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
    meta = ImageMeta(image_id=0, file_name="0.jpg", ori_size=(h, w), img_size=(h, w))
    empty = torch.zeros((0, 4)), torch.zeros((0,), dtype=torch.int64)
    return DetBatch.collate([DetSample(image=image, boxes=empty[0], labels=empty[1], meta=meta)])


def runtimes(model: nn.Module, folder: Path, threads: int) -> dict[str, Callable[[DetBatch], object]]:
    """``{runtime: predict}`` for eager, ONNX Runtime and TorchScript (the last two exported to ``folder``)."""
    out: dict[str, Callable[[DetBatch], object]] = {
        "eager": torch.inference_mode()(model.predict),
        "eager opt": torch.inference_mode()(optimize_for_inference(copy.deepcopy(model)).predict),
    }
    passive = os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"
    config = {"session.intra_op.allow_spinning": "0"} if passive else {}
    for fmt, suffix in (("onnx", ".onnx"), ("torchscript", ".torchscript")):
        path = folder / f"model{suffix}"
        export_detector(model, path, ExportOptions(format=fmt), class_names=[str(i) for i in range(80)])
        out[fmt] = load_export(path, threads=threads, session_config=config).as_detector().predict
    return out


def time_alternating(
    fns: dict[str, Callable[[DetBatch], object]], batch: DetBatch, repeats: int
) -> dict[str, float]:
    """Median seconds per call of each function, calls interleaved (two warm-up rounds first)."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(repeats + 2):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn(batch)
            if round_ >= 2:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models", nargs="+", default=[*R50_MODELS, *DETR_MODELS], help="model configs (conf/model/NAME)"
    )
    parser.add_argument(
        "--size", type=int, nargs=2, default=None, metavar=("H", "W"),
        help="one image size for all models (default: each model's test size, see default_size)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per runtime (after 2 warm-ups)")
    args = parser.parse_args()
    threads = torch.get_num_threads()
    wait = os.environ.get("OMP_WAIT_POLICY", "default")
    print(f"batch 1, {threads} threads (wait policy {wait}), median of {args.repeats} runs")
    print(
        f"{'model':<20} {'image':>9} {'eager ms':>9} {'onnxrt ms':>10} {'ratio':>6} {'torchscript ms':>15} "
        f"{'ratio':>6} {'eager opt ms':>13} {'onnxrt/opt':>10}"
    )
    for name in args.models:
        h, w = args.size or default_size(name)
        batch = image_batch(h, w)
        model = build(name)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                fns = runtimes(model, Path(tmp), threads)
            except ExportError as e:
                print(f"{name:<20} not exportable: {e}")
                continue
            meter = StealMeter()
            med = time_alternating(fns, batch, args.repeats)
            steal = steal_note(meter.share())
        eager = med["eager"]
        print(
            f"{name:<20} {h:>4}x{w:<4} {eager * 1e3:>9.0f} {med['onnx'] * 1e3:>10.0f} {med['onnx'] / eager:>6.2f} "
            f"{med['torchscript'] * 1e3:>15.0f} {med['torchscript'] / eager:>6.2f} "
            f"{med['eager opt'] * 1e3:>13.0f} {med['onnx'] / med['eager opt']:>10.2f}  {steal}"
        )


if __name__ == "__main__":
    main()

"""lightdet's RT-DETR / D-FINE against transformers' on the same converted weights and the same input.

    python scripts/bench/rtdetr_vs_transformers.py --models rt_detr d_fine --repeats 7

Each model is transformers' default config (``RTDetrConfig()``: RT-DETR R50-vd, ``DFineConfig()``: its
default D-FINE) with seeded random weights, saved with ``save_pretrained`` and converted by ``lightdet-convert
hf``'s code path. One 640x640 image, batch 1, CPU, inference (``torch.inference_mode``). The two forwards
alternate so that the machine's other work hits both alike; the medians and lightdet/transformers ratio are
printed with the load average. lightdet's time includes its preprocessing (uint8 -> float) and the top-k
post-processing; transformers' is the model's forward on the float tensor. lightdet runs as ``Predictor`` and
``lightdet-test`` run it (:func:`lightdet.models.optimize_for_inference`: BatchNorm folded, channels-last
weights); "as built" is the same model without that rewrite.
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

from lightdet.benchmark import StealMeter, steal_note
from lightdet.checkpoint.from_hf import (
    convert_hf_state_dict,
    hf_class_names,
    hf_model_overrides,
    read_hf_folder,
)
from lightdet.checkpoint.report import check_against_target
from lightdet.composition import compose_config
from lightdet.models import optimize_for_inference
from lightdet.structures import DetBatch, ImageMeta


def build_pair(kind: str, folder: Path) -> tuple[torch.nn.Module, torch.nn.Module]:
    """``(transformers model, lightdet detector)`` of ``kind`` with the same seeded weights, in eval mode."""
    import transformers

    torch.manual_seed(0)
    config = transformers.RTDetrConfig() if kind == "rt_detr" else transformers.DFineConfig()
    cls = transformers.RTDetrForObjectDetection if kind == "rt_detr" else transformers.DFineForObjectDetection
    reference = cls(config).eval()
    reference.save_pretrained(folder)
    hf_config, state = read_hf_folder(folder)
    name, overrides = hf_model_overrides(hf_config)
    cfg = compose_config(None, [f"+model={name}", f"+dataset.num_classes={len(hf_class_names(hf_config))}", *overrides])
    ours = instantiate(cfg.model)
    converted, report = convert_hf_state_dict(state, kind)
    ours.load_state_dict(check_against_target(converted, report, ours.state_dict()), strict=False)
    return reference, ours.eval()


def one_image_batch(size: int) -> DetBatch:
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (1, 3, size, size), dtype=torch.uint8, generator=g)
    meta = ImageMeta(image_id=0, file_name="x.jpg", ori_size=(size, size), img_size=(size, size))
    return DetBatch(images=image, boxes=[torch.zeros(0, 4)], labels=[torch.zeros(0, dtype=torch.long)],
                    ignore=[torch.zeros(0, dtype=torch.bool)], metas=[meta])


def alternate(fns: dict[str, Callable[[], object]], repeats: int, warmup: int) -> dict[str, list[float]]:
    """Runs each function in turn, ``warmup`` untimed rounds then ``repeats`` timed ones (seconds)."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    with torch.inference_mode():
        for i in range(warmup + repeats):
            for name, fn in fns.items():
                start = time.perf_counter()
                fn()
                if i >= warmup:
                    times[name].append(time.perf_counter() - start)
    return times


def bench(kind: str, size: int, repeats: int, warmup: int) -> float:
    """Prints both medians and their ratio; returns lightdet / transformers."""
    with tempfile.TemporaryDirectory() as tmp:
        reference, ours = build_pair(kind, Path(tmp))
    batch = one_image_batch(size)
    pixels = batch.images.float() / 255
    fast = optimize_for_inference(copy.deepcopy(ours))
    meter = StealMeter()
    times = alternate({"transformers": lambda: reference(pixel_values=pixels), "lightdet": lambda: fast.predict(batch),
                       "as built": lambda: ours.predict(batch)}, repeats, warmup)  # fmt: skip
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["lightdet"] / med["transformers"]
    print(f"{kind:8s} {size}x{size} batch 1: transformers {med['transformers'] * 1e3:8.1f} ms  lightdet "
          f"{med['lightdet'] * 1e3:8.1f} ms  ratio {ratio:.3f}  (as built {med['as built'] * 1e3:.1f} ms, ratio "
          f"{med['as built'] / med['transformers']:.3f}; medians of {repeats}; load {os.getloadavg()[0]:.1f}) "
          f"{steal_note(meter.share())}")
    return ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["rt_detr", "d_fine"], choices=["rt_detr", "d_fine"])
    parser.add_argument("--size", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()}")
    for kind in args.models:
        bench(kind, args.size, args.repeats, args.warmup)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``lightdet-bench``: parameters, FLOPs, latency and images/s of a detector.

Examples::

    lightdet-bench outputs/<run>/checkpoints/last.ckpt --size 144 144          a trained checkpoint
    lightdet-bench faster_rcnn --size 800 1216 --repeats 20                    a model config, random weights
    lightdet-bench faster_rcnn --device cuda --precision 16-mixed --batch 8   GPU, mixed precision
    lightdet-bench retinanet --json bench.json                                also write the numbers
    lightdet-bench model.onnx --size 800 1216                                 an export, with ONNX Runtime
    lightdet-bench faster_rcnn --as-built                                     without BatchNorm folding / NHWC
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from lightdet.benchmark import PRECISIONS, STEAL_WARNING, BenchResult, benchmark


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lightdet-bench",
        description=(
            "Measure a detector: parameters, FLOPs per image at an input size (convolutions and matrix "
            "products, torch.utils.flop_counter), and the latency of predict() (pre-processing, network and "
            "post-processing) on synthetic images: warm-up runs first, then the median and 90th percentile "
            "of the timed runs, and images/s."
        ),
        epilog=__doc__.split("Examples::", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("target", help="a lightdet checkpoint (.ckpt), a file written by lightdet-export (.onnx, .torchscript, .pt2: timed with its runtime) or a model config name (conf/model, e.g. faster_rcnn)")
    parser.add_argument("--size", nargs=2, type=int, default=[800, 1216], metavar=("H", "W"), help="input height and width (default 800 1216)")
    parser.add_argument("--batch", type=int, default=1, help="images per call (default 1)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (default cpu)")
    parser.add_argument("--precision", default="32", choices=sorted(PRECISIONS), help="(default 32)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs first (default 3)")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs (default 10)")
    parser.add_argument("--num-classes", type=int, default=80, help="classes of a model config name (default 80)")
    parser.add_argument("--as-built", action="store_true", help="time the model as trained: no BatchNorm folding, no channels-last weights (lightdet.models.optimize_for_inference, which inference applies by default)")
    parser.add_argument("--no-flops", action="store_true", help="skip counting FLOPs")
    parser.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    return parser  # fmt: skip


def load_model(target: str, num_classes: int) -> nn.Module:
    """A checkpoint's detector (its weights), or a model config's with random weights."""
    from hydra.utils import instantiate

    from lightdet.composition import compose_config
    from lightdet.inference import Predictor

    if Path(target).is_file():
        return Predictor.from_checkpoint(target, device="cpu", optimize=False).model
    cfg = compose_config(None, [f"+model={target}", f"+dataset.num_classes={num_classes}"])
    return instantiate(cfg.model, _convert_="all")


def format_result(name: str, r: BenchResult) -> str:
    flops = "n/a" if r.gflops is None else f"{r.gflops:.1f} GFLOPs/image"
    params = "n/a" if r.params_m is None else f"{r.params_m:.2f} M"
    lines = [
        f"{name}: {params} parameters, {flops} at {r.size[0]}x{r.size[1]}",
        f"  {r.device} {r.precision} {r.backend}, batch {r.batch}: median {r.median_s * 1000:.1f} ms, "
        f"p90 {r.p90_s * 1000:.1f} ms over {r.runs} runs, {r.images_per_s:.2f} images/s",
    ]
    if r.cpu_steal is not None and r.cpu_steal > STEAL_WARNING:
        lines.append(
            f"  warning: the hypervisor took {r.cpu_steal:.0%} of this machine's CPU time during the runs "
            "(/proc/stat steal); these timings are slower than on a quiet machine"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    from hydra.errors import HydraException

    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        model = load_model(args.target, args.num_classes)
    except HydraException as err:
        print(f"error: {args.target!r} is neither a checkpoint file nor a model config: {err}", file=sys.stderr)
        return 2
    try:
        result = benchmark(
            model, size=tuple(args.size), batch=args.batch, device=args.device, precision=args.precision,
            warmup=args.warmup, repeats=args.repeats, flops=not args.no_flops, optimize=not args.as_built,
        )  # fmt: skip
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_result(args.target, result))
    if args.json:
        args.json.write_text(json.dumps(result.as_dict(), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

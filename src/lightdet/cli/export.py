"""``lightdet-export``: a checkpoint -> an ONNX, TorchScript or ExportedProgram file, checked against the
eager model.

Examples::

    lightdet-export outputs/run/checkpoints/last.ckpt --out model.onnx
    lightdet-export last.ckpt --format torchscript --out model.torchscript
    lightdet-export last.ckpt --format exported_program --out model.pt2 --no-check
    lightdet-export last.ckpt --out fixed.onnx --no-dynamic --size 800 1216 --batch 4
    lightdet-infer model.onnx photos/ --out preds
    lightdet-test ckpt=model.onnx split=val
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

DESCRIPTION = """\
Export a lightdet checkpoint for deployment. The exported graph takes uint8 RGB images [B, 3, H, W] as
the checkpoint's test pipeline sizes them (resizing stays outside the graph), normalises and pads them
inside, runs the detector and its post-processing (NMS as ONNX NonMaxSuppression; for the NMS-free
real-time DETRs a top-k over queries x classes) and returns, in the pixels of the image it was given:
  boxes [N, 4] float32 xyxy, scores [N] float32, labels [N] int64, batch_index [N] int64
  (+ masks [N, M, M] float32 for mask models: each detection's mask probabilities over its box).
The file carries its metadata (class names, size policy, score threshold, the checkpoint's config), so
lightdet-infer, lightdet-test and lightdet.Predictor.from_export run it with the same pipeline. BatchNorm
in eval mode is folded into the preceding convolutions first (exact). After writing, the file is run next
to the eager model on seeded images and the two sets of detections compared (--no-check skips this).
Formats: onnx (ONNX Runtime; needs the `deploy` extra: pip install 'lightdet[deploy]'), torchscript
(torch.jit.trace), exported_program (torch.export, a .pt2 file).
Families: Faster / Mask / Cascade (Mask) R-CNN, RetinaNet, FCOS, RTMDet, RT-DETR, RT-DETRv2, D-FINE.
Unsupported: Soft-NMS (a data-dependent Python loop) and heads without an export graph are reported by name.
"""

SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript", "exported_program": ".pt2"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lightdet-export",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=DESCRIPTION,
        epilog=__doc__.split("Examples::", 1)[1],
    )
    parser.add_argument("ckpt", type=Path, help="a checkpoint written by lightdet-train or lightdet-convert")
    parser.add_argument(
        "--format", default="onnx", choices=tuple(SUFFIXES), help="the file format (default: onnx)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="the file to write (default: the checkpoint's name with .onnx / .torchscript / .pt2)",
    )
    parser.add_argument(
        "--opset",
        type=int,
        default=17,
        help="ONNX opset (default 17; >= 11, and >= 16 for RoIAlign with aligned=True and the DETRs' "
        "bilinear sampling)",
    )
    parser.add_argument(
        "--dynamic",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="accept any image height/width (default: yes, unless the test pipeline resizes "
        "every image to one fixed size); --no-dynamic needs a fixed size",
    )
    parser.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="the image size of a static export (--no-dynamic), or the example size traced",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=1,
        help="images per call, fixed (default 1; >1 needs images of one size, e.g. a camera)",
    )
    parser.add_argument(
        "--half",
        action="store_true",
        help="float16 network on CUDA (normalisation and post-processing stay float32)",
    )
    parser.add_argument("--no-fold", action="store_true", help="keep BatchNorm layers unfolded")
    parser.add_argument(
        "--no-check",
        action="store_true",
        help="skip the parity check of the written file against the eager model",
    )
    return parser


def run(args: argparse.Namespace) -> int:
    """Exports, prints what was written and the parity check; returns the exit code."""
    from lightdet.export import ExportOptions, ParityError
    from lightdet.export.checkpoint import check_export, export_checkpoint

    out = args.out or args.ckpt.with_suffix(SUFFIXES[args.format])
    options = ExportOptions(
        format=args.format,
        size=tuple(args.size) if args.size else None,
        batch=args.batch,
        opset=args.opset,
        half=args.half,
        fold_norms=not args.no_fold,
    )
    metadata, eager = export_checkpoint(args.ckpt, out, options, dynamic=args.dynamic)
    size = metadata.input_size
    shape = "any H x W" if size["dynamic"] else f"{size['example_size'][0]} x {size['example_size'][1]}"
    print(
        f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): {metadata.family}, {metadata.format}, "
        f"{len(metadata.class_names)} classes, input uint8 [{size['batch']}, 3, {shape}], resize "
        f"{size['resize']}, outputs {', '.join(metadata.outputs)}, {metadata.folded_norms} norms folded"
    )
    if args.no_check:
        return 0
    try:
        report = check_export(out, eager, metadata)
    except ParityError as e:
        print(f"parity check FAILED: {e}", file=sys.stderr)
        return 1
    print(f"parity check against the eager model: {report}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from lightdet.export import ExportError

    try:
        return run(args)
    except (ExportError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        if e.name in ("onnx", "onnxruntime"):
            print(f"error: {e.name} is not installed: pip install 'lightdet[deploy]'", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())

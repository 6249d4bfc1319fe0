"""``lightdet-infer``: run a checkpoint on image files, folders or globs; write COCO-style JSON and drawings.

Examples::

    lightdet-infer outputs/run/checkpoints/last.ckpt photos/ --out preds --draw
    lightdet-infer model.ckpt 'photos/**/*.jpg' street.png --score-thr 0.3 --batch-size 4 --device cuda
    lightdet-infer ckpt=model.ckpt input=photos/ out=preds score_thr=0.3      # the key=value spelling
    lightdet-infer model.ckpt aerial.tif --slice 512 --overlap 0.2             # large image, small objects
    lightdet-infer model.ckpt photos/ --tta --tta-scales 0.8 1 1.2 --tta-merge wbf   # test-time augmentation
    lightdet-infer model.onnx photos/ --out preds                              # a file from lightdet-export
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
_KEY_VALUE = re.compile(r"^(ckpt|input|out|score_thr|draw_thr|batch_size|device|slice|overlap)=(.*)$")


def expand_inputs(inputs: Sequence[str]) -> list[Path]:
    """Files as given, folders as their image files (sorted, not recursive), globs (``**`` recursive) expanded.

    Raises:
        FileNotFoundError: an input that is neither a file, a folder nor a glob matching a file.
    """
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not images:
                raise FileNotFoundError(f"{item}: a folder without image files ({', '.join(IMAGE_SUFFIXES)})")
            found += images
        elif glob.has_magic(item):
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            if not matches:
                raise FileNotFoundError(f"{item}: the pattern matches no file")
            found += matches
        else:
            raise FileNotFoundError(f"{item}: no such file or folder")
    return list(dict.fromkeys(found))  # an image named twice is processed once


def coco_predictions(paths: Sequence[Path], detections: Sequence[Any], class_names: Sequence[str]) -> dict:
    """A COCO-format dict: ``images`` (ids 1..N in input order), ``categories`` (id = label + 1, with
    names) and ``annotations`` (one per detection: xywh ``bbox``, ``score``, ``area``)."""
    from PIL import Image

    from lightdet.structures import xyxy_to_xywh

    images, annotations = [], []
    for image_id, (path, det) in enumerate(zip(paths, detections), start=1):
        with Image.open(path) as img:
            width, height = img.size
        images.append({"id": image_id, "file_name": str(path), "width": width, "height": height})
        boxes = xyxy_to_xywh(det.boxes).tolist()
        for box, score, label in zip(boxes, det.scores.tolist(), det.labels.tolist()):
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": int(label) + 1,
                "bbox": [round(v, 2) for v in box], "score": round(float(score), 5),
                "area": round(box[2] * box[3], 2), "iscrowd": 0,
            })
    categories = [{"id": i + 1, "name": name} for i, name in enumerate(class_names)]
    return {"images": images, "categories": categories, "annotations": annotations}


def _drawing_names(paths: Sequence[Path]) -> list[str]:
    """``<stem>.png`` per image; a repeated stem gets ``_2``, ``_3`` ... so no drawing overwrites another."""
    seen: dict[str, int] = {}
    names = []
    for path in paths:
        seen[path.stem] = seen.get(path.stem, 0) + 1
        names.append(f"{path.stem}.png" if seen[path.stem] == 1 else f"{path.stem}_{seen[path.stem]}.png")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lightdet-infer",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Detect objects in images with a lightdet checkpoint. Images are preprocessed by the test pipeline "
            "stored in the checkpoint; boxes are in each image's own pixels. Writes OUT/predictions.json "
            "(COCO format: images, categories with id = label + 1, annotations with scores) and, with --draw, "
            "OUT/vis/<image>.png."
        ),
        epilog=__doc__.split("Examples::", 1)[1],
    )
    parser.add_argument("ckpt", type=Path, help="a checkpoint written by lightdet-train or lightdet-convert, or a "
                        "file written by lightdet-export (.onnx runs with ONNX Runtime)")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: $LIGHTDET_OUTPUT or outputs, then infer/<timestamp>)")
    parser.add_argument("--score-thr", type=float, default=0.0, help="keep detections scoring at least this")
    parser.add_argument("--draw", action="store_true", help="also write the images with their boxes drawn")
    parser.add_argument("--draw-thr", type=float, default=0.3, help="score threshold of the drawings")
    parser.add_argument("--batch-size", type=int, default=1,
                        help="images per forward pass (larger is faster on a GPU; 1 gives exact per-image results)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--slice", type=int, default=None, metavar="PIXELS",
                        help="sliced inference for large images with small objects: also predict on tiles of "
                             "PIXELS x PIXELS (each resized like a whole image) and merge them with the whole image")
    parser.add_argument("--overlap", type=float, default=0.2, help="with --slice: the share of a tile its neighbour "
                                                                   "also covers (default 0.2)")
    parser.add_argument("--tta", action="store_true",
                        help="test-time augmentation: predict every --tta-scales size, mirrored too, and merge")
    parser.add_argument("--tta-scales", type=float, nargs="+", default=[1.0], metavar="FACTOR",
                        help="with --tta: sizes relative to the test pipeline's (default 1.0)")
    parser.add_argument("--tta-merge", choices=("nms", "wbf"), default="nms",
                        help="with --tta: merge by NMS or weighted box fusion (default nms)")
    return parser


def normalise_argv(argv: Sequence[str]) -> list[str]:
    """Accepts the ``ckpt=PATH input=DIR out=DIR score_thr=X`` spelling alongside the options."""
    positional: dict[str, list[str]] = {"ckpt": [], "input": []}
    rest: list[str] = []
    for arg in argv:
        m = _KEY_VALUE.match(arg)
        if m is None:
            rest.append(arg)
        elif m.group(1) in positional:
            positional[m.group(1)].append(m.group(2))
        else:
            rest += [f"--{m.group(1).replace('_', '-')}", m.group(2)]
    return [*positional["ckpt"], *positional["input"], *rest] if any(positional.values()) else list(rest)


def run(args: argparse.Namespace) -> tuple[Path, int]:
    """Predicts every input image; writes the JSON (and drawings); returns the folder and the detections."""
    from rich.progress import track

    from lightdet.inference import Predictor

    paths = expand_inputs(args.inputs)
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S")
    out = args.out or Path(os.environ.get("LIGHTDET_OUTPUT", "outputs")) / "infer" / stamp
    detector = Predictor.from_checkpoint(args.ckpt, device=args.device)
    if args.tta:
        detector = detector.with_tta(args.tta_scales, flip=True, merge=args.tta_merge)
    chunks = [paths[i : i + args.batch_size] for i in range(0, len(paths), args.batch_size)]
    detections: list[Any] = []
    for chunk in track(chunks, description="lightdet-infer", disable=args.no_progress, transient=True):
        detections += detector.predict(
            chunk, score_thr=args.score_thr, batch_size=args.batch_size, slice=args.slice, overlap=args.overlap
        )
    out.mkdir(parents=True, exist_ok=True)
    payload = coco_predictions(paths, detections, detector.class_names)
    (out / "predictions.json").write_text(json.dumps(payload), encoding="utf-8")
    if args.draw:
        (out / "vis").mkdir(exist_ok=True)
        for path, det, name in zip(paths, detections, _drawing_names(paths)):
            detector.show(path, det, score_thr=args.draw_thr).save(out / "vis" / name)
    return out, len(payload["annotations"])


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(normalise_argv(sys.argv[1:] if argv is None else argv))
    if args.batch_size < 1:
        print(f"error: --batch-size must be >= 1, got {args.batch_size}", file=sys.stderr)
        return 2
    try:
        out, count = run(args)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    drawn = f" and drawings to {out / 'vis'}" if args.draw else ""
    print(f"wrote {count} detections to {out / 'predictions.json'}{drawn}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``lightdet-data``: dataset tools.

Examples::

    lightdet-data make-shapes --out data/shapes
    lightdet-data make-shapes --out /tmp/shapes --num-train 200 --num-val 50 --seed 3
    lightdet-data check dataset=coco paths.data_dir=/data          every split of a dataset config
    lightdet-data check data/my/annotations.json --img-dir data/my/images --classes cat dog
    lightdet-data browse dataset=voc0712 --out browse/ --num 8      samples after the train pipeline
    lightdet-data stats dataset=coco model=faster_rcnn --out stats/  box statistics, anchor coverage
    lightdet-data convert voc2coco VOC2007/ImageSets/Main/test.txt voc07_test.json
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import fields

from lightdet.cli import data_commands
from lightdet.data.synthetic import ShapesParams, make_shapes

_SHAPES_HELP = {
    "num_train": "number of training images",
    "num_val": "number of validation images",
    "seed": "random seed (the same arguments always give the same files)",
    "min_image_size": "smallest image side in pixels",
    "max_image_size": "largest image side in pixels",
    "min_object_size": "smallest object diameter in pixels",
    "max_object_size": "largest object diameter in pixels",
    "max_objects": "objects per image are drawn from 1..N",
    "max_overlap": "largest box intersection between two objects, as a fraction of the smaller box",
    "jpeg_quality": "JPEG quality of the written images",
}


def _add_make_shapes(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "make-shapes",
        help="write the synthetic shapes dataset (COCO format) used by the quickstart",
        description=(
            "Writes a deterministic COCO-format dataset of coloured shapes (circle, square, triangle, star, "
            "hexagon) with boxes and polygon masks: OUT/annotations/{train,val}.json and OUT/{train,val}/*.jpg. "
            "lightdet-train generates it on first use under paths.data_dir; use this to make one elsewhere "
            "or with other sizes."
        ),
    )
    p.add_argument("--out", required=True, help="output folder (created)")
    for f in fields(ShapesParams):
        p.add_argument(
            f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default,
            help=f"{_SHAPES_HELP[f.name]} (default: {f.default})",
        )
    p.set_defaults(func=_run_make_shapes)


def _run_make_shapes(args: argparse.Namespace) -> int:
    params = {f.name: getattr(args, f.name) for f in fields(ShapesParams)}
    try:
        out = make_shapes(args.out, **params)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {params['num_train']} train and {params['num_val']} val images to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lightdet-data",
        description="lightdet dataset tools. Run `lightdet-data SUBCOMMAND --help` for each one.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")
    _add_make_shapes(sub)
    data_commands.add_check(sub)
    data_commands.add_browse(sub)
    data_commands.add_stats(sub)
    data_commands.add_convert(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())

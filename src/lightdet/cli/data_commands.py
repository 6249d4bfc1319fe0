"""``lightdet-data check / browse / stats / convert``: argument parsers and what each one runs."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from lightdet.cli._hydra import UsageError
from lightdet.cli.data_tools import (
    compose_train_config,
    dump_json,
    find_anchor_generator,
    split_node,
    split_target,
)

__all__ = ["add_check", "add_browse", "add_stats", "add_convert"]

_TARGET_HELP = (
    "an annotation file (COCO json, middle-format json, or a VOC split list ImageSets/Main/<split>.txt) and/or "
    "overrides of lightdet's train config choosing the dataset, e.g. `dataset=coco paths.data_dir=/data`; "
    "with neither, the default dataset (shapes)"
)
_SPLITS = ("train", "val", "test")


def _classes_arg(values: list[str] | None) -> Any:
    """``--classes a b`` -> a list; ``--classes classes.txt`` or one name -> the bare string."""
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def _add_target(p: argparse.ArgumentParser) -> None:
    p.add_argument("target", nargs="*", metavar="FILE_OR_OVERRIDE", help=_TARGET_HELP)
    p.add_argument(
        "--img-dir",
        help="image folder of FILE (default: FILE's folder, or beside an annotations/ folder the one named "
        "after FILE, e.g. annotations/instances_val2017.json -> val2017/, or images/; VOC: the year folder)",
    )
    p.add_argument("--classes", nargs="+", metavar="NAME",
                   help="classes to check FILE against: names, or one classes.txt (default: the file's own)")


def _dataset(args: argparse.Namespace, split: str) -> tuple[Any, Any]:
    """The dataset to browse / measure and the composed config (for the model's anchors)."""
    from hydra.utils import instantiate

    from lightdet.data.datasets.files import dataset_from_file

    file, overrides = split_target(args.target)
    cfg = compose_train_config(overrides)
    if file is not None:
        return dataset_from_file(file, args.img_dir, classes=_classes_arg(args.classes), with_mask=True), cfg
    node = cfg.dataset.datamodule.get(split)
    if node is None:
        raise UsageError(f"the dataset config has no {split} split (dataset.datamodule.{split} is null)")
    return instantiate(node), cfg


# -- check ----------------------------------------------------------------------------------------------
def add_check(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check", help="find what is wrong with a dataset before training on it",
        description=(
            "Reads the annotation files of a dataset config (every split) or of one FILE and reports, per split: "
            "images, boxes and instances per class; entries with missing keys or wrong types; boxes with NaN or "
            "infinite coordinates, of zero size or outside the image; unknown category ids and image ids; "
            "duplicated image ids; configured classes missing from the file or in another order; boxes that look "
            "written in the other convention (xywh vs xyxy). Every image is decoded as training decodes it (in "
            "--workers processes): missing, truncated, unreadable and 32-bit files, sizes that differ from the "
            "file, 16-bit files (reduced to 8 bits) and files with an EXIF orientation tag. Exit status 1 when "
            "errors are found (also warnings with --strict)."
        ),
        epilog="examples:\n  lightdet-data check dataset=coco paths.data_dir=/data\n"
               "  lightdet-data check ann.json --img-dir images --classes classes.txt --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_target(p)
    p.add_argument("--json", action="store_true", help="print the reports as JSON")
    p.add_argument("--strict", action="store_true", help="exit with status 1 on warnings too")
    p.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                   help="processes decoding the images (default: the CPU cores, at most 8; 0: this process)")
    p.add_argument("--exif", choices=("ignore", "apply"),
                   help="EXIF orientation as training will treat it (default: the config's dataset.exif, else "
                        "ignore)")
    p.set_defaults(func=run_check)


def _split_sources(cfg: Any, split: str) -> list[Any]:
    """The annotation sources of a split of the config (none when the split is unset)."""
    from lightdet.data.sources import annotation_sources

    node = split_node(cfg, split)
    if node is None:
        return []
    try:
        return annotation_sources(node)
    except ValueError as err:
        raise UsageError(str(err)) from None


@contextmanager
def _image_progress(quiet: bool) -> Iterator[Any]:
    """A progress bar on stderr (nothing when it is not a terminal); yields ``start(label) -> progress``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=console, transient=True, disable=quiet or not console.is_terminal)

    def start(label: str) -> Any:
        task = bar.add_task(f"decoding images: {label}", total=None)
        return lambda done, total: bar.update(task, completed=done, total=total)

    with bar:
        yield start


def _reports(args: argparse.Namespace) -> list[Any]:
    from lightdet.data.check import ImagePass, check_annotation_file, check_source

    file, overrides = split_target(args.target)
    with _image_progress(args.json) as start:
        if file is not None:
            return [check_annotation_file(file, args.img_dir, classes=_classes_arg(args.classes), split="file",
                                          exif=args.exif or "ignore", workers=args.workers, progress=start(file))]
        cfg = compose_train_config(overrides)
        exif = args.exif or cfg.dataset.get("exif", "ignore")
        return [check_source(src, split, ImagePass(exif, args.workers, start(f"{split} {src.ann_file}")))
                for split in _SPLITS for src in _split_sources(cfg, split)]


def _print_report(console: Console, report: Any) -> None:
    console.rule(f"{report.split}: {report.source}")
    console.print(f"{report.num_images} images, {report.num_boxes} boxes")
    if report.instances:
        table = Table("class", "instances")
        for name, count in report.instances.items():
            table.add_row(name, str(count))
        console.print(table)
    style = {"error": "bold red", "warning": "yellow", "info": "dim"}
    for issue in report.issues:
        console.print(f"[{style[issue.severity]}]{issue.severity.upper()}[/] {issue.code}: {issue.message}",
                      highlight=False)
        for example in issue.examples:
            console.print(f"    {example}", highlight=False, markup=False)


def run_check(args: argparse.Namespace) -> int:
    reports = _reports(args)
    errors = sum(r.errors for r in reports)
    warnings = sum(r.warnings for r in reports)
    if args.json:
        print(dump_json([r.to_dict() for r in reports]))
    else:
        console = Console(width=120)
        for r in reports:
            _print_report(console, r)
        console.print(f"{errors} error(s), {warnings} warning(s) in {len(reports)} file(s)")
    return 1 if errors or (args.strict and warnings) else 0


# -- browse ---------------------------------------------------------------------------------------------
def add_browse(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "browse", help="draw samples after the pipeline, as the model sees them, to PNG files",
        description=("Runs NUM images of a split through its pipeline (resize, flip, augmentations) and writes "
                     "them with their boxes, labels and masks drawn to OUT/<k>_<image_id>.png; grey boxes are "
                     "ignored (crowd / difficult)."),
    )
    _add_target(p)
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--split", default="train", choices=_SPLITS, help="which split of the config (default: train)")
    p.add_argument("--num", type=int, default=8, help="number of images (default: 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random choice of images (default: 0)")
    p.set_defaults(func=run_browse)


def run_browse(args: argparse.Namespace) -> int:
    from lightdet.data.visualize import browse

    dataset, _ = _dataset(args, args.split)
    paths = browse(dataset, args.out, num=args.num, seed=args.seed)
    print(f"wrote {len(paths)} images to {args.out}")
    return 0


# -- stats ----------------------------------------------------------------------------------------------
def add_stats(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stats", help="class counts, box size/aspect histograms and anchor coverage",
        description=("Counts instances per class and histograms box sizes (sqrt(w*h), original pixels) and aspect "
                     "ratios (h/w), as a table and as OUT/{class_counts,box_sizes,aspect_ratios}.png. With a "
                     "model that has an anchor generator (model=...), runs up to --max-images images through the "
                     "split's pipeline and reports the share of boxes whose best anchor has IoU >= 0.5."),
    )
    _add_target(p)
    p.add_argument("--out", required=True, help="output folder for the PNG plots (created)")
    p.add_argument("--split", default="train", choices=_SPLITS, help="which split of the config (default: train)")
    p.add_argument("--max-images", type=int, default=200, help="images used for anchor coverage (default: 200)")
    p.set_defaults(func=run_stats)


def _anchor_line(dataset: Any, cfg: Any, max_images: int) -> str:
    from lightdet.data.visualize import anchor_coverage

    generator, divisor = find_anchor_generator(cfg)
    if generator is None:
        return "anchor coverage: the model has no anchor generator"
    samples = (dataset[i] for i in range(min(max_images, len(dataset))))
    pairs = ((s.meta.img_size, s.boxes[~s.ignore]) for s in samples)
    coverage, best = anchor_coverage(pairs, generator, size_divisor=divisor)
    return (f"anchor coverage: {coverage:.1%} of {len(best)} boxes (first {min(max_images, len(dataset))} images, "
            f"after the pipeline) have an anchor with IoU >= 0.5; median best IoU {float(_median(best)):.2f}")


def _median(values: Any) -> float:
    import numpy as np

    return float(np.median(values)) if len(values) else float("nan")


def run_stats(args: argparse.Namespace) -> int:
    import numpy as np

    from lightdet.data.visualize import bar_chart, box_stats, histogram

    dataset, cfg = _dataset(args, args.split)
    stats = box_stats(dataset.get_record(i) for i in range(len(dataset)))
    counts = np.bincount(stats.labels, minlength=len(dataset.class_names))
    out = Path(args.out)
    bar_chart(counts.tolist(), dataset.class_names, "instances per class", out / "class_counts.png")
    histogram(stats.sizes, [0, 16, 32, 64, 96, 128, 256, 512, 1e9], "box size sqrt(w*h), px", out / "box_sizes.png")
    histogram(stats.aspect_ratios, [0, 0.25, 0.5, 0.8, 1.25, 2, 4, 1e9], "aspect ratio h/w", out / "aspect_ratios.png")
    table = Table("class", "instances", "median size", "median h/w")
    for k, name in enumerate(dataset.class_names):
        sel = stats.labels == k
        table.add_row(name, str(int(counts[k])), f"{_median(stats.sizes[sel]):.1f}",
                      f"{_median(stats.aspect_ratios[sel]):.2f}")
    console = Console(width=120)
    console.print(f"{stats.num_images} images, {len(stats.labels)} boxes (ignored boxes excluded)")
    console.print(table)
    console.print(_anchor_line(dataset, cfg, args.max_images), highlight=False)
    console.print(f"plots: {out}/class_counts.png, box_sizes.png, aspect_ratios.png", highlight=False)
    return 0


# -- convert --------------------------------------------------------------------------------------------
_CONVERTERS = {
    "voc2coco": ("a VOC split list (VOC2007/ImageSets/Main/test.txt) -> COCO json; difficult boxes -> iscrowd",
                 "SPLIT_FILE"),
    "middle2coco": ("a middle-format json -> COCO json; bboxes_ignore -> iscrowd", "MIDDLE_JSON"),
    "coco2middle": ("a COCO json -> middle-format json; iscrowd -> bboxes_ignore", "COCO_JSON"),
    "yolo2coco": ("YOLO txt labels (class cx cy w h, normalised) -> COCO json; needs --classes", "IMAGE_DIR"),
    "images2coco": ("a folder of images (recursive) -> COCO json with images only, for inference or "
                    "pseudo-labelling", "IMAGE_DIR"),
}


_EXAMPLES = {
    "voc2coco": "lightdet-data convert voc2coco VOCdevkit/VOC2007/ImageSets/Main/test.txt voc07_test.json",
    "middle2coco": "lightdet-data convert middle2coco train_middle.json train_coco.json",
    "coco2middle": "lightdet-data convert coco2middle instances_val2017.json val_middle.json",
    "yolo2coco": "lightdet-data convert yolo2coco data/images/train train.json --classes classes.txt",
    "images2coco": "lightdet-data convert images2coco photos/ photos.json --classes classes.txt",
    "dataset2coco": "lightdet-data convert dataset2coco val val.json dataset=voc0712 paths.data_dir=/data",
}
_DATASET2COCO = (
    "the annotation file of one split of a dataset config, in whatever format its dataset class reads "
    "(a class of your own included) -> COCO json, with the file's values (nothing clipped or dropped)"
)


def add_convert(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert annotations to COCO json (offline)",
                       description="Converts annotations once, offline; the datasets also read VOC and the middle "
                                   "format directly (online). Category ids are 1..K in class order (dataset2coco: the "
                                   "dataset's own).")
    conv = p.add_subparsers(dest="converter", required=True, metavar="CONVERTER")
    for name, (text, src) in _CONVERTERS.items():
        c = conv.add_parser(name, help=text, description=text, epilog=f"example: {_EXAMPLES[name]}")
        c.add_argument("src", metavar=src, help="what to convert")
        c.add_argument("dst", metavar="DST", help="the json file to write")
        c.add_argument("--classes", nargs="+", metavar="NAME",
                       help="class names in id order, or one classes.txt" +
                            (" (default: the 20 VOC classes)" if name == "voc2coco" else ""))
        if name == "yolo2coco":
            c.add_argument("--labels-dir", help="folder of <image>.txt (default: IMAGE_DIR with images -> labels)")
        c.set_defaults(func=run_convert)
    c = conv.add_parser("dataset2coco", help=_DATASET2COCO, description=_DATASET2COCO,
                        epilog=f"example: {_EXAMPLES['dataset2coco']}")
    c.add_argument("src", metavar="SPLIT", choices=_SPLITS, help="which split of the config")
    c.add_argument("dst", metavar="DST", help="the json file to write")
    c.add_argument("overrides", nargs="*", metavar="OVERRIDE",
                   help="overrides of lightdet's train config choosing the dataset, e.g. dataset=voc0712")
    c.set_defaults(func=run_convert, classes=None)


def _split_to_convert(args: argparse.Namespace) -> dict[str, Any]:
    """``dataset2coco``: the node of the split to convert, from the composed config."""
    node = split_node(compose_train_config(args.overrides), args.src)
    if node is None:
        raise UsageError(f"the dataset config has no {args.src} split (dataset.datamodule.{args.src} is null)")
    return node


def run_convert(args: argparse.Namespace) -> int:
    from lightdet.data import converters as cv

    classes = _classes_arg(args.classes)
    if args.converter == "yolo2coco" and classes is None:
        raise UsageError("yolo2coco needs --classes (the names YOLO's class indices refer to)")
    node = _split_to_convert(args) if args.converter == "dataset2coco" else None
    run = {
        "voc2coco": lambda: cv.voc_to_coco(args.src, args.dst, **({"classes": classes} if classes else {})),
        "middle2coco": lambda: cv.middle_to_coco(args.src, args.dst, classes=classes),
        "coco2middle": lambda: cv.coco_to_middle(args.src, args.dst),
        "yolo2coco": lambda: cv.yolo_to_coco(args.src, args.dst, classes=classes, labels_dir=args.labels_dir),
        "images2coco": lambda: cv.images_to_coco(args.src, args.dst, classes=classes),
        "dataset2coco": lambda: cv.dataset_to_coco(node, args.dst),  # type: ignore[arg-type]
    }[args.converter]
    try:
        data = run()
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    n_ann = len(data.get("annotations", [])) if isinstance(data, dict) else 0
    n_img = len(data["images"])
    print(f"wrote {args.dst}: {n_img} images" + (f", {n_ann} annotations" if args.converter != "coco2middle" else ""))
    return 0

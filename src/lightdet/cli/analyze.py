"""``lightdet-analyze``: plots, report.html and analysis.json from a COCO results file and its ground truth.

Examples::

    lightdet-test ckpt=run/checkpoints/last.ckpt split=val out=results/val.json
    lightdet-analyze results/val.json --gt data/shapes/annotations/val.json --img-dir data/shapes/val
    lightdet-analyze results/val.json --gt annotations/instances_val2017.json --out analysis/ --gallery 24
    lightdet-analyze outputs/faster_rcnn_small_quickstart_shapes/2026-01-01_12-00-00   # a training run
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from lightdet.analysis.report import FIGURES, AnalysisInputs, AnalysisReport

_RUN_ANALYSIS = Path("plots") / "analysis"


def build_parser() -> argparse.ArgumentParser:
    figures = "\n".join(f"  {name:<24} {title}" for name, (title, _) in FIGURES.items())
    parser = argparse.ArgumentParser(
        prog="lightdet-analyze",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Analyse detection results against their ground truth: where the AP is lost and why.\n\n"
            "Give either a COCO results file (a list of {image_id, category_id, bbox, score}, as "
            "`lightdet-test ... out=results.json` writes) with --gt, or a training run directory (its last "
            "validation, recorded in RUN_DIR/plots/analysis). Writes one PNG per figure, report.html (open it in "
            "a browser: every figure with how to read it) and analysis.json (every number).\n\n"
            f"Figures:\n{figures}"
        ),
        epilog=__doc__.split("Examples::", 1)[1],
    )
    parser.add_argument("source", type=Path, metavar="RESULTS_OR_RUN_DIR",
                        help="a COCO results JSON file, or a lightdet-train run directory")
    parser.add_argument("--gt", type=Path, default=None,
                        help="the COCO ground-truth JSON the results refer to (needed with a results file)")
    parser.add_argument("--img-dir", type=Path, default=None,
                        help="the folder that the ground truth's file_name entries are relative to (for the "
                             "gallery of the worst images; without it the gallery says 'not found')")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: RESULTS_analysis/ beside the results file; "
                             "RUN_DIR/plots/analysis for a run directory)")
    parser.add_argument("--gallery", type=int, default=12, metavar="N", help="worst images shown (default 12)")
    parser.add_argument("--no-progress", action="store_true", help="no progress display")
    return parser


def resolve_inputs(args: argparse.Namespace) -> tuple[AnalysisInputs, Path]:
    """What to analyse and where to write, from the arguments (a results file or a run directory).

    Raises:
        ValueError: a results file without ``--gt``.
        FileNotFoundError: a source that does not exist, or a run directory without a recorded validation.
    """
    source: Path = args.source
    if source.is_dir():
        inputs = AnalysisInputs.load(source / _RUN_ANALYSIS)
        if args.img_dir is not None:
            inputs.img_dir = str(args.img_dir)
        return inputs, args.out or source / _RUN_ANALYSIS
    if not source.is_file():
        raise FileNotFoundError(f"{source}: no such results file or run directory")
    if args.gt is None:
        raise ValueError(f"{source} is a results file: give its ground truth with --gt ANNOTATIONS.json")
    inputs = AnalysisInputs(str(source), str(args.gt), None if args.img_dir is None else str(args.img_dir))
    return inputs, args.out or source.with_name(f"{source.stem}_analysis")


def run(inputs: AnalysisInputs, out: Path, *, gallery: int = 12, progress: bool = True) -> AnalysisReport:
    """Runs :func:`~lightdet.analysis.analyze` with a progress display of its steps."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from lightdet.analysis import analyze

    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, disable=not progress, transient=True) as bar:
        task = bar.add_task("lightdet-analyze: reading", total=None)
        return analyze(
            inputs.results, inputs.ground_truth, out, img_dir=inputs.img_dir, cat_ids=inputs.cat_ids,
            image_ids=inputs.image_ids, gallery_size=gallery,
            on_step=lambda name: bar.update(task, description=f"lightdet-analyze: {name}"),
        )  # fmt: skip


def _print_summary(report: AnalysisReport) -> None:
    stats = report.analysis.stats
    print(
        f"analysed {report.analysis.num_images} images, {report.analysis.num_detections} detections in "
        f"{report.seconds:.1f} s: mAP {stats['mAP']:.4f}, mAP_50 {stats['mAP_50']:.4f}; best F1 at score >= "
        f"{report.analysis.best_threshold:.2f}"
    )
    for note in report.notes:
        print(f"note: {note}")
    print(f"report: {report.html}\nnumbers: {report.json}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.gallery < 0:
        print(f"error: --gallery must be >= 0, got {args.gallery}", file=sys.stderr)
        return 2
    try:
        inputs, out = resolve_inputs(args)
        report = run(inputs, out, gallery=args.gallery, progress=not args.no_progress)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    _print_summary(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``analyze``: a results file and its ground truth in, a folder of plots, ``report.html`` and
``analysis.json`` out.

The folder holds one PNG per figure (:data:`FIGURES`), ``analysis.json`` (every number, see
:meth:`~lightdet.analysis.numbers.Analysis.to_json`) and ``report.html``, which shows the figures with a
line on how to read each, the COCO statistics and a per-class table.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from lightdet.analysis import plots
from lightdet.analysis.coco import GroundTruthInput, ResultsInput, evaluate_results
from lightdet.analysis.gallery import plot_gallery, worst_images
from lightdet.analysis.numbers import COCO_STAT_NAMES, Analysis, compute_analysis

__all__ = ["FIGURES", "INPUTS_FILE", "AnalysisInputs", "AnalysisReport", "analyze", "write_html"]

#: The file, in an analysis folder, that records what was analysed (so that it can be analysed again).
INPUTS_FILE = "inputs.json"

#: Each figure's file, title and how to read it (in report order).
FIGURES: dict[str, tuple[str, str]] = {
    "pr_curves.png": ("Precision-recall curves",
                      "Precision against recall at IoU 0.5 and 0.75, per class and averaged; the area under a curve "
                      "is its AP. A curve that drops early means the highest-scoring boxes are already wrong."),
    "pr_curves_per_class.png": ("Precision-recall per class",
                                "One panel per class: solid IoU 0.5, dashed IoU 0.75. A wide gap between them means "
                                "the boxes find the object but fit it loosely."),
    "f1_confidence.png": ("F1 over the score threshold",
                          "How F1 (IoU 0.5) changes with the score threshold, per class and over all classes; the "
                          "dotted line is the threshold with the best F1 (a good `score_thr` for deployment)."),
    "confusion_matrix.png": ("Confusion matrix",
                             "True class (rows) against predicted class (columns) at the best-F1 threshold. The "
                             "last column counts missed objects, the last row boxes on no object."),
    "tide_errors.png": ("TIDE error breakdown",
                        "How many AP@0.5 points fixing each kind of error would add; the longest bar is the error "
                        "to work on first."),
    "ap_by_size.png": ("AP by object size",
                       "AP for small, medium and large objects (COCO's area ranges) and how many of each there are."),
    "per_class_ap.png": ("AP per class", "AP@[0.5:0.95] (dark) and AP@0.5 (light) per class, worst first."),
    "calibration.png": ("Calibration", "Whether a score of 0.8 means 80 % of such boxes are correct (IoU 0.5). "
                                       "Bars below the diagonal: over-confident scores."),
    "gallery.png": ("Worst images", "The images with the most false positives (red) and missed objects (orange, "
                                    "dashed) at the best-F1 threshold; green boxes are correct."),
}  # fmt: skip

_DRAW: dict[str, Callable[[Analysis, Path], Path]] = {
    "pr_curves.png": plots.plot_pr_curves,
    "pr_curves_per_class.png": plots.plot_pr_per_class,
    "f1_confidence.png": plots.plot_f1_confidence,
    "confusion_matrix.png": plots.plot_confusion_matrix,
    "tide_errors.png": plots.plot_tide,
    "ap_by_size.png": plots.plot_ap_by_size,
    "per_class_ap.png": plots.plot_per_class_ap,
    "calibration.png": plots.plot_calibration,
}

Step = Callable[[str], None]
"""Told the name of each step as it starts (a progress display)."""


@dataclass
class AnalysisReport:
    """What :func:`analyze` wrote: the folder, ``report.html``, ``analysis.json``, the figures, the numbers."""

    out_dir: Path
    html: Path
    json: Path
    figures: dict[str, Path]
    analysis: Analysis
    seconds: float
    notes: list[str] = field(default_factory=list)


@dataclass
class AnalysisInputs:
    """What an analysis reads: a results file, its ground truth, the image folder and the evaluated subset.

    Paths are stored as given (relative ones relative to the folder holding :data:`INPUTS_FILE`).
    """

    results: str
    ground_truth: str
    img_dir: str | None = None
    cat_ids: list[int] | None = None
    image_ids: list[int] | None = None

    def save(self, folder: Path) -> Path:
        """Writes ``folder/inputs.json``."""
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / INPUTS_FILE
        path.write_text(json.dumps(self.__dict__, indent=1), encoding="utf-8")
        return path

    @classmethod
    def load(cls, folder: Path) -> AnalysisInputs:
        """Reads ``folder/inputs.json``; relative paths are resolved against ``folder``."""
        path = folder / INPUTS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file (an analysis folder written by a training run has one)")
        data = json.loads(path.read_text(encoding="utf-8"))
        for key in ("results", "ground_truth", "img_dir"):
            if data.get(key) is not None:
                data[key] = str(folder / data[key])  # an absolute path stays as it is
        return cls(**data)


def analyze(
    results: ResultsInput,
    ground_truth: GroundTruthInput,
    out_dir: str | PathLike,
    *,
    img_dir: str | PathLike | None = None,
    cat_ids: Sequence[int] | None = None,
    image_ids: Sequence[int] | None = None,
    gallery_size: int = 12,
    on_step: Step | None = None,
) -> AnalysisReport:
    """Analyses COCO detection ``results`` against ``ground_truth``; writes the figures, JSON and HTML.

    Args:
        results, ground_truth: see :data:`~lightdet.analysis.coco.ResultsInput` and
            :data:`~lightdet.analysis.coco.GroundTruthInput`.
        out_dir: the folder to write (created).
        img_dir: the folder the ground truth's ``file_name`` entries are relative to, for the gallery; None
            draws the gallery only for absolute file names.
        cat_ids, image_ids: restrict the evaluation (see :func:`~lightdet.analysis.coco.evaluate_results`).
        gallery_size: how many of the worst images the gallery shows.
        on_step: called with each step's name before it runs.
    """
    start = time.perf_counter()
    step = on_step or (lambda _: None)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    step("evaluating (hotcoco COCOeval)")
    evaluated = evaluate_results(results, ground_truth, cat_ids=cat_ids, image_ids=image_ids)
    step("curves, confusion matrix, TIDE, calibration")
    analysis = compute_analysis(evaluated)
    figures: dict[str, Path] = {}
    for name, draw in _DRAW.items():
        step(f"plotting {name}")
        figures[name] = draw(analysis, out / name)
    step("plotting gallery.png")
    items = worst_images(evaluated, analysis, gallery_size)
    figures["gallery.png"] = plot_gallery(items, img_dir, out / "gallery.png", score_thr=analysis.best_threshold)
    notes = [] if img_dir is not None else ["no image folder given (--img-dir): the gallery shows boxes only"]
    seconds = time.perf_counter() - start
    analysis.extra.update(gallery=[{"image_id": i.image_id, "file_name": i.file_name, "tp": i.tp, "fp": i.fp,
                                    "fn": i.fn} for i in items], seconds=round(seconds, 3))  # fmt: skip
    step("writing analysis.json and report.html")
    json_path = out / "analysis.json"
    json_path.write_text(json.dumps(analysis.to_json(), indent=1, allow_nan=False), encoding="utf-8")
    report = AnalysisReport(out, out / "report.html", json_path, figures, analysis, seconds, notes)
    write_html(report)
    return report


def _stats_table(analysis: Analysis) -> str:
    cells = "".join(
        f"<tr><td>{name}</td><td>{'n/a' if v is None or v < 0 else f'{v:.4f}'}</td></tr>"
        for name, v in ((n, analysis.stats[n]) for n in COCO_STAT_NAMES)
    )
    return f"<table><tr><th>COCO statistic</th><th>value</th></tr>{cells}</table>"


def _class_table(analysis: Analysis) -> str:
    def num(value: Any, digits: int = 3) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    head = "<tr>" + "".join(f"<th>{h}</th>" for h in (
        "class", "objects", "detections", "AP", "AP@0.5", "AP@0.75", "best F1", "at score")) + "</tr>"  # fmt: skip
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{r['num_gt']}</td><td>{r['num_detections']}</td><td>{num(r['AP'])}</td>"
        f"<td>{num(r['AP_50'])}</td><td>{num(r['AP_75'])}</td><td>{num(r['best_f1'])}</td>"
        f"<td>{num(r['best_threshold'], 2)}</td></tr>"
        for name, r in analysis.per_class.items()
    )
    return f"<table>{head}{rows}</table>"


_CSS = (
    "body{font-family:sans-serif;max-width:1250px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #eee}"
    "nav a{margin-right:1em}p.how{color:#555}"
)


def write_html(report: AnalysisReport) -> Path:
    """``report.html``: the key numbers, then every figure with its reading guide, linked by name."""
    a = report.analysis
    nav = "".join(f'<a href="#{n}">{FIGURES[n][0]}</a>' for n in report.figures)
    sections = "".join(
        f'<h2 id="{name}">{FIGURES[name][0]}</h2><p class="how">{html.escape(FIGURES[name][1])}</p>'
        f'<a href="{name}"><img src="{name}" alt="{FIGURES[name][0]}"></a>'
        for name in report.figures
    )
    notes = "".join(f"<p><em>{html.escape(n)}</em></p>" for n in report.notes)
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>lightdet analysis</title><style>{_CSS}</style>"
        f"</head><body><h1>Detection analysis</h1><p>{a.num_images} images, {a.num_gt} objects, "
        f"{a.num_detections} detections, {len(a.class_names)} classes; best F1 over all classes at score &ge; "
        f"{a.best_threshold:.2f}. Numbers: <a href='analysis.json'>analysis.json</a>. "
        f"Analysed in {report.seconds:.1f} s.</p>{notes}<nav>{nav}</nav>{_stats_table(a)}{_class_table(a)}"
        f"{sections}</body></html>"
    )
    report.html.write_text(page, encoding="utf-8")
    return report.html

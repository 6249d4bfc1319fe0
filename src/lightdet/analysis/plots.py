"""The analysis figures, drawn with matplotlib's object API (no pyplot: no global state, no display needed).

Each function takes an :class:`~lightdet.analysis.numbers.Analysis` and a path, writes one PNG and returns
the path. Titles say what is plotted and subtitles how to read it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from lightdet.analysis.numbers import ALL_CLASSES, SIZE_NAMES, TIDE_ERRORS, Analysis

__all__ = [
    "plot_pr_curves", "plot_pr_per_class", "plot_f1_confidence", "plot_confusion_matrix", "plot_tide",
    "plot_ap_by_size", "plot_per_class_ap", "plot_calibration", "save", "class_colour", "LEGEND_LIMIT",
]  # fmt: skip

#: With more classes than this, per-class lines are drawn grey and unlabelled.
LEGEND_LIMIT = 10
DPI = 110


def save(fig: Figure, path: Path) -> Path:
    """Writes ``fig`` as PNG (parent folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


def class_colour(k: int, num_classes: int) -> str | tuple[float, ...]:
    """A distinct colour per class when there are few; grey when lines are only context."""
    if num_classes > LEGEND_LIMIT:
        return (0.6, 0.6, 0.6, 0.5)
    return f"C{k % 10}"


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def plot_pr_curves(analysis: Analysis, path: Path) -> Path:
    """Precision over recall at IoU 0.5 and 0.75: every class and the mean over classes (thick)."""
    fig = Figure(figsize=(12, 5.2), layout="constrained")
    names = analysis.class_names
    for ax, (iou, curves) in zip(fig.subplots(1, 2), analysis.pr.items()):
        for k, name in enumerate(names):
            label = f"{name} (AP {_fmt(curves.ap[k])})" if len(names) <= LEGEND_LIMIT else None
            ax.plot(curves.recall, curves.per_class[k], color=class_colour(k, len(names)), lw=1.2, label=label)
        mean_ap = float(np.nanmean(curves.overall)) if np.isfinite(curves.overall).any() else float("nan")
        ax.plot(curves.recall, curves.overall, color="black", lw=3, label=f"all classes (mAP {_fmt(mean_ap)})")
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision",
               title=f"IoU {iou:.2f}: mAP@{iou:.2f} = {_fmt(mean_ap)}")  # fmt: skip
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
    fig.suptitle("Precision-recall curves (COCO's interpolated precision; area under a curve = its AP)")
    return save(fig, path)


def plot_pr_per_class(analysis: Analysis, path: Path) -> Path:
    """One small panel per class with its PR curves at IoU 0.5 and 0.75."""
    names = analysis.class_names
    cols = min(5, max(1, len(names)))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(max(8.0, 2.8 * cols), 2.6 * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, sharey=True)).ravel()
    for k, (ax, name) in enumerate(zip(axes, names)):
        for iou, style in ((0.5, "-"), (0.75, "--")):
            curves = analysis.pr[iou]
            ax.plot(curves.recall, curves.per_class[k], style, color="C0" if iou == 0.5 else "C3", lw=1.5,
                    label=f"IoU {iou}: AP {_fmt(curves.ap[k], 2)}")  # fmt: skip
        ax.set(xlim=(0, 1), ylim=(0, 1.02), title=f"{name} ({analysis.per_class[name]['num_gt']} objects)")
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=7)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    fig.supxlabel("recall")
    fig.supylabel("precision")
    fig.suptitle("Precision-recall per class (solid: IoU 0.5, dashed: IoU 0.75)")
    return save(fig, path)


def plot_f1_confidence(analysis: Analysis, path: Path) -> Path:
    """F1 per class over the score threshold, and the pooled precision and recall, with the best threshold."""
    fig = Figure(figsize=(12, 5.2), layout="constrained")
    ax, ax_pr = fig.subplots(1, 2)
    names = analysis.class_names
    for k, name in enumerate(names):
        curve = analysis.f1[name]
        label = f"{name} (best {_fmt(curve.best_f1, 2)} at {_fmt(curve.best_threshold, 2)})"
        ax.plot(curve.confidence, curve.f1, color=class_colour(k, len(names)), lw=1.2,
                label=label if len(names) <= LEGEND_LIMIT else None)  # fmt: skip
    pooled = analysis.f1[ALL_CLASSES]
    ax.plot(pooled.confidence, pooled.f1, color="black", lw=3, label=f"all classes (best {_fmt(pooled.best_f1, 2)})")
    if math.isfinite(pooled.best_threshold):
        ax.axvline(pooled.best_threshold, color="black", ls=":", lw=1)
        ax.plot([pooled.best_threshold], [pooled.best_f1], "o", color="black")
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="score threshold (detections scoring at least this are kept)",
           ylabel="F1 at IoU 0.5", title="F1 over the score threshold")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    ax_pr.plot(pooled.confidence, pooled.precision, color="C0", lw=2, label="precision")
    ax_pr.plot(pooled.confidence, pooled.recall, color="C3", lw=2, label="recall")
    ax_pr.plot(pooled.confidence, pooled.f1, color="black", lw=2, ls="--", label="F1")
    if math.isfinite(pooled.best_threshold):
        ax_pr.axvline(pooled.best_threshold, color="black", ls=":", lw=1,
                      label=f"best F1 at score >= {pooled.best_threshold:.2f}: P {pooled.precision_at_best:.2f}, "
                            f"R {pooled.recall_at_best:.2f}")  # fmt: skip
    ax_pr.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="score threshold", title="All classes: precision and recall")
    ax_pr.grid(alpha=0.3)
    ax_pr.legend(loc="lower left", fontsize=8)
    fig.suptitle("Choosing a score threshold (the dotted line: the one with the best F1 over all classes)")
    return save(fig, path)


def _annotate_cells(ax, counts: np.ndarray, shares: np.ndarray) -> None:
    """Writes each non-empty cell's count, white on dark cells."""
    for (i, j), count in np.ndenumerate(counts):
        if count:
            ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                    color="white" if shares[i, j] > 0.6 else "black")  # fmt: skip


def plot_confusion_matrix(analysis: Analysis, path: Path) -> Path:
    """Ground truth (rows) against predictions (columns) with a background row and column, row-normalised."""
    counts = np.asarray(analysis.confusion["matrix"], dtype=np.int64)
    labels = analysis.confusion["labels"]
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = max(6.0, 0.45 * len(labels) + 2.5)
    fig = Figure(figsize=(side + 1.2, side), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    if len(labels) <= 30:
        _annotate_cells(ax, counts, shares)
    ticks = range(len(labels))
    tick_labels = [*labels[:-1], "background\n(missed)"]
    ax.set_xticks(ticks, tick_labels, rotation=45 if len(labels) > 6 else 0, ha="right" if len(labels) > 6 else "center",
                  fontsize=8)  # fmt: skip
    ax.set_yticks(ticks, [*labels[:-1], "background\n(no object)"], fontsize=8)
    ax.set(xlabel="predicted class", ylabel="true class")
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the row (ground-truth class)")
    ax.set_title(
        f"Confusion matrix at IoU {analysis.confusion['iou_thr']}, scores >= {analysis.confusion['min_score']:.2f} "
        "(best F1)\nnumbers: counts; colour: share of the row\nlast column: objects missed; last row: boxes on "
        "no object", fontsize=10,
    )  # fmt: skip
    return save(fig, path)


def plot_tide(analysis: Analysis, path: Path) -> Path:
    """TIDE: how many AP@0.5 points fixing each kind of error would add."""
    tide = analysis.tide
    kinds = list(TIDE_ERRORS)
    gains = [100 * tide["delta_ap"][k] for k in kinds]
    fig = Figure(figsize=(10, 4.6), layout="constrained")
    ax = fig.subplots()
    bars = ax.barh(range(len(kinds)), gains, color=["C1", "C2", "C4", "C5", "C3", "C0"])
    counted = [f"{tide['counts'][k]} {'objects' if k == 'Miss' else 'detections'}" for k in kinds]
    ax.set_yticks(range(len(kinds)), [f"{TIDE_ERRORS[k]}\n({n})" for k, n in zip(kinds, counted)], fontsize=9)
    ax.invert_yaxis()
    ax.bar_label(bars, [f"+{g:.1f}" for g in gains], padding=3, fontsize=9)
    ax.set_xlim(0, max(gains + [1.0]) * 1.2)
    ax.set_xlabel("AP@0.5 points gained if this error were fixed (larger = hurts more)")
    ax.set_title(f"TIDE error breakdown (AP@0.5 = {100 * tide['ap_base']:.1f}; background IoU < {tide['bg_thr']})")
    ax.grid(axis="x", alpha=0.3)
    return save(fig, path)


def plot_ap_by_size(analysis: Analysis, path: Path) -> Path:
    """AP and AP@0.5 for small, medium and large objects, with how many objects each size has."""
    fig = Figure(figsize=(8, 4.6), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(SIZE_NAMES))
    for offset, key, colour in ((-0.2, "AP", "C0"), (0.2, "AP_50", "C9")):
        values = [analysis.sizes[s][key] for s in SIZE_NAMES]
        bars = ax.bar(x + offset, [v or 0.0 for v in values], width=0.4, color=colour,
                      label="AP@[0.5:0.95]" if key == "AP" else "AP@0.5")  # fmt: skip
        ax.bar_label(bars, ["no objects" if v is None else f"{v:.3f}" for v in values], fontsize=8, padding=2)
    bounds = ("area < 32²", "32² to 96²", "area > 96²")
    ax.set_xticks(x, [f"{s}\n{b} px\n{analysis.sizes[s]['num_gt']} objects" for s, b in zip(SIZE_NAMES, bounds)])
    ax.set(ylim=(0, 1.1), ylabel="AP", title="AP by object size (COCO area ranges)")
    ax.legend(loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    return save(fig, path)


def plot_per_class_ap(analysis: Analysis, path: Path) -> Path:
    """AP@[0.5:0.95] per class (bars, worst at the top) with AP@0.5 (light bars behind)."""
    rows = sorted(analysis.per_class.items(), key=lambda kv: -1.0 if kv[1]["AP"] is None else kv[1]["AP"])
    fig = Figure(figsize=(9, max(3.0, 0.32 * len(rows) + 1.8)), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(rows))
    ax.barh(y, [r["AP_50"] or 0.0 for _, r in rows], color="C0", alpha=0.3, label="AP@0.5")
    bars = ax.barh(y, [r["AP"] or 0.0 for _, r in rows], color="C0", label="AP@[0.5:0.95]")
    ax.bar_label(bars, ["no objects" if r["AP"] is None else f"{r['AP']:.3f}" for _, r in rows], fontsize=8, padding=2)
    ax.set_yticks(y, [f"{name} ({r['num_gt']})" for name, r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlim=(0, 1.1), xlabel="AP", title="AP per class, worst first (number of objects in brackets)")
    fig.legend(loc="outside lower center", ncols=2)
    ax.grid(axis="x", alpha=0.3)
    return save(fig, path)


def plot_calibration(analysis: Analysis, path: Path) -> Path:
    """Reliability diagram: the share of detections that are correct in each score bin against the score."""
    cal = analysis.calibration
    bins = [b for b in cal["bins"] if b.get("count")]
    fig = Figure(figsize=(11, 4.8), layout="constrained")
    ax, ax_count = fig.subplots(1, 2)
    centres = [(b["bin_lower"] + b["bin_upper"]) / 2 for b in bins]
    width = (cal["bins"][0]["bin_upper"] - cal["bins"][0]["bin_lower"]) if cal["bins"] else 0.1
    ax.bar(centres, [b["avg_accuracy"] or 0.0 for b in bins], width=width * 0.9, color="C0", label="correct share")
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfectly calibrated")
    ax.plot(centres, [b["avg_confidence"] for b in bins], "_", color="C3", ms=22, mew=3,
            label="mean score in the bin (where a calibrated bar ends)")  # fmt: skip
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="detection score", ylabel=f"share correct (IoU >= {cal['iou_thr']})",
           title=f"Reliability: ECE {_fmt(cal['ece'])}, worst bin gap {_fmt(cal['mce'])}")  # fmt: skip
    ax.legend(loc="upper left", fontsize=8)
    ax.grid(alpha=0.3)
    ax_count.bar(centres, [b["count"] for b in bins], width=width * 0.9, color="C7")
    ax_count.set(xlim=(0, 1), xlabel="detection score", ylabel="detections", title="How many detections per score bin")
    ax_count.grid(alpha=0.3)
    fig.suptitle("Calibration: a bar below its red mark means over-confident scores, above it under-confident")
    return save(fig, path)

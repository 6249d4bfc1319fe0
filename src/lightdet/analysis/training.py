"""``results.png``: a training run at a glance, one panel per loss, the learning rate and validation metrics.

Takes plain rows (``{"step": int, "epoch": int, name: float, ...}``), as
:class:`lightdet.engine.report.RunReport` records them, so it knows nothing of Lightning.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from lightdet.analysis.plots import save

__all__ = ["plot_training_curves", "smooth", "val_panels"]

Row = Mapping[str, float]

#: Validation panels: a title and the metric-name endings it gathers (``val/bbox_mAP`` ends with ``mAP``).
_VAL_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("val AP", ("mAP", "mAP_50", "mAP_75")),
    ("val AP by size", ("mAP_s", "mAP_m", "mAP_l")),
    ("val AR", ("AR_1", "AR_10", "AR_100")),
    ("val AR by size", ("AR_s", "AR_m", "AR_l")),
)


def smooth(values: np.ndarray, weight: float = 0.9) -> np.ndarray:
    """Exponential moving average with bias correction (TensorBoard's smoothing); NaN values are skipped."""
    out = np.full(len(values), np.nan)
    avg, norm = 0.0, 0.0
    for i, v in enumerate(values):
        if math.isfinite(v):
            avg, norm = weight * avg + (1 - weight) * v, weight * norm + (1 - weight)
        out[i] = avg / norm if norm else np.nan
    return out


def _series(rows: Sequence[Row], key: str, x_key: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of the rows holding ``key``; COCO's -1 ("no object of that size") is left out."""
    pairs = [(r[x_key], r[key]) for r in rows if key in r and x_key in r and r[key] != -1]
    if not pairs:
        return np.zeros(0), np.zeros(0)
    x, y = zip(*pairs)
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)


def val_panels(keys: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Validation metric names grouped into panels (AP, AP by size, AR, then one panel per other metric)."""
    panels, used = [], set()
    for title, endings in _VAL_GROUPS:
        chosen = [k for end in endings for k in keys if k.split("/", 1)[-1].split("_", 1)[-1] == end]
        if chosen:
            panels.append((title, chosen))
            used.update(chosen)
    panels += [(k, [k]) for k in keys if k not in used]
    return panels


def _train_panel(ax, rows: Sequence[Row], key: str) -> None:
    x, y = _series(rows, key, "step")
    if key.endswith("lr"):  # a schedule, not a noisy measurement: drawn as it is
        ax.plot(x, y, color="C2", lw=2)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    else:
        ax.plot(x, y, color="C0", alpha=0.3, lw=1, label="logged")
        ax.plot(x, smooth(y), color="C0", lw=2, label="smoothed")
    ax.set_title(key, fontsize=10)
    ax.set_xlabel("step")


def _val_panel(ax, rows: Sequence[Row], title: str, keys: Sequence[str]) -> None:
    for k, key in enumerate(keys):
        x, y = _series(rows, key, "epoch")
        ax.plot(x, y, "o-", color=f"C{k}", lw=2, ms=4, label=key.split("/", 1)[-1])
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7)


def plot_training_curves(train_rows: Sequence[Row], val_rows: Sequence[Row], path: Path) -> Path:
    """Writes ``results.png``: every ``train/*`` series over steps, validation metrics over epochs."""
    train_keys = sorted({k for r in train_rows for k in r if k.startswith("train/")},
                        key=lambda k: (k.endswith("lr"), k != "train/loss", k))  # fmt: skip
    val_keys = sorted({k for r in val_rows for k in r if k.startswith("val/") and r[k] != -1})
    panels: list[tuple[str, list[str]]] = [(k, [k]) for k in train_keys] + val_panels(val_keys)
    cols = min(4, max(1, len(panels)))
    rows = max(1, math.ceil(len(panels) / cols))
    fig = Figure(figsize=(4 * cols, 3.2 * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, (title, keys) in zip(axes, panels):
        if title.startswith("train/"):
            _train_panel(ax, train_rows, title)
        else:
            _val_panel(ax, val_rows, title, keys)
        ax.grid(alpha=0.3)
    for ax in axes[len(panels) :]:
        ax.set_axis_off()
    if not panels:
        axes[0].text(0.5, 0.5, "nothing logged yet", ha="center", va="center")
    last = f", last validation at epoch {int(val_rows[-1]['epoch'])}" if val_rows else ""
    fig.suptitle(f"Training run: losses per step (light: logged, dark: smoothed), lr per step, validation per "
                 f"epoch{last}")  # fmt: skip
    return save(fig, path)

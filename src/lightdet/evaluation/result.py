"""What an evaluation returns, and its COCO-style text tables."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from io import StringIO

from rich.console import Console
from rich.table import Table

__all__ = ["COCO_STAT_NAMES", "PROTOCOL_STATS", "EvalResult"]

#: Names of COCOeval's 12 summary statistics, in ``COCOeval.stats`` order (prefixed with the IoU type,
#: e.g. ``bbox_mAP``).
COCO_STAT_NAMES: tuple[str, ...] = (
    "mAP", "mAP_50", "mAP_75", "mAP_s", "mAP_m", "mAP_l",
    "AR_1", "AR_10", "AR_100", "AR_s", "AR_m", "AR_l",
)  # fmt: skip

# (measure, IoU, area, maxDets) of each statistic, as COCOeval.summarize() prints them.
_STAT_ROWS: tuple[tuple[str, str, str, str], ...] = (
    ("AP", "0.50:0.95", "all", "100"),
    ("AP", "0.50", "all", "100"),
    ("AP", "0.75", "all", "100"),
    ("AP", "0.50:0.95", "small", "100"),
    ("AP", "0.50:0.95", "medium", "100"),
    ("AP", "0.50:0.95", "large", "100"),
    ("AR", "0.50:0.95", "all", "1"),
    ("AR", "0.50:0.95", "all", "10"),
    ("AR", "0.50:0.95", "all", "100"),
    ("AR", "0.50:0.95", "small", "100"),
    ("AR", "0.50:0.95", "medium", "100"),
    ("AR", "0.50:0.95", "large", "100"),
)


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.3f}"


#: Each protocol's summary statistics: ``(name, (measure, IoU, area, maxDets))`` in the backend's order.
#: LVIS (federated, 300 detections per image) adds AP over rare/common/frequent categories; Open Images
#: reports AP at IoU 0.5 with group-of boxes.
PROTOCOL_STATS: dict[str, tuple[tuple[str, tuple[str, str, str, str]], ...]] = {
    "coco": tuple(zip(COCO_STAT_NAMES, _STAT_ROWS)),
    "lvis": (
        ("mAP", ("AP", "0.50:0.95", "all", "300")),
        ("mAP_50", ("AP", "0.50", "all", "300")),
        ("mAP_75", ("AP", "0.75", "all", "300")),
        ("mAP_s", ("AP", "0.50:0.95", "small", "300")),
        ("mAP_m", ("AP", "0.50:0.95", "medium", "300")),
        ("mAP_l", ("AP", "0.50:0.95", "large", "300")),
        ("mAP_r", ("AP", "0.50:0.95", "rare", "300")),
        ("mAP_c", ("AP", "0.50:0.95", "common", "300")),
        ("mAP_f", ("AP", "0.50:0.95", "frequent", "300")),
        ("AR_300", ("AR", "0.50:0.95", "all", "300")),
        ("AR_s", ("AR", "0.50:0.95", "small", "300")),
        ("AR_m", ("AR", "0.50:0.95", "medium", "300")),
        ("AR_l", ("AR", "0.50:0.95", "large", "300")),
    ),
    "oid": (("mAP", ("AP", "0.50", "all", "all")),),
}


@dataclass
class EvalResult:
    """The outcome of one COCO evaluation.

    Attributes:
        metrics: ``{"<iou_type>_<stat>": value}`` for each IoU type and each of :data:`COCO_STAT_NAMES`
            (``bbox_mAP, bbox_mAP_50, ..., bbox_AR_l``), in COCOeval's order. As in COCOeval, a value is
            ``-1.0`` when the evaluated images hold no ground truth for it (e.g. no small objects).
        per_class_by_type: ``{iou_type: {class_name: AP}}``, AP averaged over IoU 0.50:0.95 (area all,
            100 detections), in the configured class order; NaN for a class without ground truth in the
            evaluated images. Empty dicts when per-class evaluation was disabled.
        num_images: the number of distinct images evaluated.
    """

    metrics: dict[str, float]
    per_class_by_type: dict[str, dict[str, float]] = field(default_factory=dict)
    num_images: int = 0
    protocol: str = "coco"

    @property
    def iou_types(self) -> list[str]:
        """The IoU types present in :attr:`metrics`, in evaluation order."""
        prefix = f"_{COCO_STAT_NAMES[0]}"
        return [k[: -len(prefix)] for k in self.metrics if k.endswith(prefix)]

    @property
    def per_class(self) -> dict[str, float]:
        """Per-class AP of the first IoU type (``bbox`` in the default configuration)."""
        types = self.iou_types
        return dict(self.per_class_by_type.get(types[0], {})) if types else {}

    def coco_table(self, title: str | None = None) -> Table:
        """The protocol's statistics (COCO's 12), one row each, one value column per IoU type."""
        title = title or f"{self.protocol.upper()} metrics"
        table = Table(title=title)
        for name in ("metric", "IoU", "area", "maxDets"):
            table.add_column(name)
        types = self.iou_types
        for iou_type in types:
            table.add_column(iou_type, justify="right")
        for stat, (measure, iou, area, max_dets) in PROTOCOL_STATS[self.protocol]:
            values = [_fmt(self.metrics[f"{t}_{stat}"]) for t in types]
            table.add_row(measure, iou, area, max_dets, *values)
        return table

    def per_class_table(self, title: str = "Per-class AP", groups: int | None = None) -> Table:
        """Per-class AP@[0.50:0.95], ``groups`` side-by-side column groups (3 for more than 12 classes)."""
        types = [t for t in self.iou_types if self.per_class_by_type.get(t)]
        names = list(self.per_class_by_type[types[0]]) if types else []
        groups = groups or (3 if len(names) > 12 else 1)
        table = Table(title=title)
        for _ in range(groups):
            table.add_column("class")
            for iou_type in types:
                table.add_column(f"{iou_type} AP", justify="right")
        rows = math.ceil(len(names) / groups)
        for r in range(rows):
            cells: list[str] = []
            for name in names[r::rows] if rows else []:
                cells += [name, *(_fmt(self.per_class_by_type[t][name]) for t in types)]
            cells += [""] * ((1 + len(types)) * groups - len(cells))
            table.add_row(*cells)
        return table

    def render(self, width: int = 120) -> str:
        """Both tables as plain text (the per-class table only when per-class AP was computed)."""
        buffer = StringIO()
        console = Console(file=buffer, width=width, color_system=None, force_terminal=False)
        console.print(self.coco_table())
        if any(self.per_class_by_type.values()):
            console.print(self.per_class_table())
        return buffer.getvalue()
